"""Jobs done once by rank 0 for every process of a torchrun run, and waits that last as long as the work does.

Scoring an archive shards files across ranks that finish hours apart: a barrier on the default process group
would time out after its 30 minutes (and NCCL ones block a GPU stream). `RankSync` uses its own gloo group
(CPU, TCP) with a long timeout: a rank that dies still ends the others' wait at once (the connection closes).
Without torchrun every call is a plain function call.
"""
from datetime import timedelta

import torch.distributed as dist

from utils.engine.distributed import DistInfo
from utils.script.errors import UserError

LONG_WAIT = timedelta(days=7)


class RankSync:
    def __init__(self, info: DistInfo, timeout: timedelta = LONG_WAIT):
        self.info = info
        self.group = dist.new_group(backend="gloo", timeout=timeout) if info.enabled else None

    def from_main(self, job):
        """`job()` run on rank 0; its result on every rank. A user error it raises is raised on every rank, so
        each process ends with the same one line."""
        if not self.info.enabled:
            return job()
        payload = [None]
        if self.info.is_main:
            try:
                payload = [(True, job())]
            except UserError as e:
                payload = [(False, e)]
        dist.broadcast_object_list(payload, src=0, group=self.group)
        ok, value = payload[0]
        if not ok:
            raise value
        return value

    def barrier(self) -> None:
        if self.info.enabled:
            dist.barrier(group=self.group)
