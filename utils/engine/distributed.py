"""Small helpers for torchrun / DistributedDataParallel runs (and plain single-process runs)."""
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn

from utils.script.errors import BadInputError


@dataclass
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    is_main: bool
    enabled: bool  # True when a process group is in use (WORLD_SIZE > 1)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise BadInputError(f"environment variable {name}={value!r} is not an integer") from None


def _pick_device(device: str, local_rank: int) -> torch.device:
    if device == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError:
        raise BadInputError(f"invalid device {device!r} (use 'auto', 'cpu' or 'cuda')") from None
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            raise BadInputError(f"--device {device} requested but CUDA is not available on this machine")
        if chosen.index is None:  # one GPU per process, picked by torchrun's LOCAL_RANK
            chosen = torch.device(f"cuda:{local_rank}")
    return chosen


def init_distributed(device: str = "auto") -> DistInfo:
    """Read torchrun's RANK / WORLD_SIZE / LOCAL_RANK and, if WORLD_SIZE > 1, join the process group
    (nccl on CUDA, gloo on CPU; MASTER_ADDR / MASTER_PORT come from the environment)."""
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    if world_size < 1 or not 0 <= rank < world_size:
        raise BadInputError(f"invalid RANK={rank} for WORLD_SIZE={world_size} (set by torchrun)")

    chosen = _pick_device(device, local_rank)
    enabled = world_size > 1
    if enabled and not dist.is_initialized():
        if chosen.type == "cuda":
            torch.cuda.set_device(chosen)  # nccl collectives use the current device
        dist.init_process_group(backend="nccl" if chosen.type == "cuda" else "gloo", init_method="env://")
    if not enabled:
        rank, local_rank = 0, 0
    return DistInfo(rank, world_size, local_rank, chosen, is_main=rank == 0, enabled=enabled)


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's tensor (same shape everywhere) along dim 0, keeping the graph.

    Backward sums the incoming gradients over ranks and hands each rank its own slice, so when
    every rank computes the same loss on the gathered batch, DDP's gradient averaging gives the
    gradient of that loss as a single process on the whole batch would. Identity when not distributed.
    """
    if not _active():
        return tensor
    # torch's differentiable all_gather does exactly this (reduce-scatter of the grads; on gloo
    # it is emulated with all_to_all + sum).
    return torch.cat(dist_fn.all_gather(tensor), dim=0)


def gather_objects(obj) -> list:
    """Every rank's picklable object, in rank order ([obj] when not distributed)."""
    if not _active():
        return [obj]
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_buffers(*modules: torch.nn.Module) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics). Without --sync_bn each rank's copy
    moves with its own last batch; a model scored across the ranks must be the one rank 0 saves."""
    if not _active():
        return
    for module in modules:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def barrier() -> None:
    if _active():
        dist.barrier()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap_ddp(module: torch.nn.Module, info: DistInfo) -> torch.nn.Module:
    """DistributedDataParallel around `module` under torchrun; the module itself otherwise."""
    if not info.enabled:
        return module
    device_ids = [info.device.index] if info.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=device_ids)
