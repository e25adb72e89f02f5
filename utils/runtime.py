"""Device, mixed precision and data-loader plumbing shared by the three scripts."""
import contextlib

import torch
from torch.utils.data import DataLoader, DistributedSampler

AMP_CHOICES = ("auto", "none", "bf16", "fp16")


def amp_dtype(amp, device):
    """'auto' means bf16 on GPUs that support it, fp32 elsewhere (CPU autocast is slow)."""
    if amp == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    return {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def autocast(device, dtype):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def grad_scaler(device, dtype):
    """Loss scaling is needed for fp16 only; disabled scalers are no-ops."""
    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)


def prepare_batch(images, device, channels_last):
    images = images.to(device, non_blocking=True)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last_3d)
    return images


def make_loader(dataset, batch_size, num_workers, dist, shuffle, drop_last, seed=0, prefetch_factor=2):
    """A DataLoader whose order depends only on (seed, epoch): a DistributedSampler even with one process,
    so single-GPU, multi-GPU and resumed runs draw the same shuffles. Call loader.sampler.set_epoch(e)."""
    sampler = DistributedSampler(dataset, num_replicas=dist.world_size, rank=dist.rank, shuffle=shuffle,
                                 seed=seed, drop_last=drop_last)
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, drop_last=drop_last,
        pin_memory=dist.device.type == "cuda", persistent_workers=num_workers > 0,
        prefetch_factor=prefetch_factor if num_workers > 0 else None,
    )


def batches(loader):
    """Iterate a loader; a worker's error surfaces as one line (which names the video) instead of a
    stack of worker frames."""
    iterator = iter(loader)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except Exception as e:  # noqa: BLE001 - re-raised with the useful line on top
            lines = [line for line in str(e).splitlines() if line.strip()]
            raise RuntimeError(f"data loading failed: {lines[-1] if lines else type(e).__name__}") from e
        yield batch


def cuda_oom_hint(error):
    return (f"CUDA out of memory ({str(error).splitlines()[0][:120]}). Lower --batch_size (it is per GPU), "
            "use --amp bf16/fp16, --frames, or add GPUs with torchrun.")
