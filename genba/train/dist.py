"""Multi-process training under torchrun: which process this is, the process group, and the split of the batches.

`torchrun --nproc_per_node=N <command>` starts N copies of the command with RANK, WORLD_SIZE and LOCAL_RANK set.
`genba.train.loop.train` then joins the default process group (`init_if_needed`: gloo on CPU, NCCL on CUDA with one
GPU per process, chosen by LOCAL_RANK), wraps the model's loss in DistributedDataParallel (`wrap`), and gives rank r
every batch i with i % N == r of each epoch's global sequence (`shard`). Without torchrun (or with N = 1) every
function here is a no-op and the loop runs exactly as a single process.

The split, by what `data(epoch)` gives:
- a DataLoader: split at its batch sampler (a copy of the loader that draws the same index lists from the same
  sampler and generator and keeps every N-th), so each rank loads only its own batches;
- a sequence (`__len__` and `__getitem__`, e.g. a list, or a lazy epoch that loads batch i when indexed): indexed at
  r, r + N, ..., so each rank loads only its own batches;
- any other iterable: every rank iterates it all and keeps every N-th batch (cheap for batches already in memory;
  return a sequence or a DataLoader when building a batch is the expensive part). The first N batches of each epoch
  are compared across ranks, since a stream that depends on the rank (or on the global RNGs, which evaluation on
  rank 0 alone moves) would silently train on duplicated or missing batches.
A trailing group of fewer than N batches is dropped on every rank, so all ranks take the same number of steps.
"""

from __future__ import annotations

import atexit
import datetime
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, IterableDataset

from genba.errors import GenbaError

# Rank 0 evaluates and writes checkpoints while the others wait in a collective: allow it a while (NCCL's default is
# 10 minutes). A crashed rank does not make the others wait this long: torchrun stops every process when one fails.
TIMEOUT = datetime.timedelta(minutes=30)


def world() -> tuple[int, int]:
    """(rank, world size): from the process group when one is initialized, else from torchrun's environment."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """True on the process that writes logs, checkpoints and summaries (rank 0; the only one without torchrun)."""
    return world()[0] == 0


def device_for(device: torch.device) -> torch.device:
    """This process's device: cuda:LOCAL_RANK under torchrun (one GPU per process), else `device` unchanged."""
    if device.type != "cuda" or world()[1] == 1:
        return device
    if local_rank() >= torch.cuda.device_count():
        n = torch.cuda.device_count()
        raise GenbaError(f"LOCAL_RANK={local_rank()} but only {n} CUDA devices: torchrun needs one per process")
    return torch.device("cuda", local_rank())


def init_if_needed(device: torch.device) -> bool:
    """Join the default process group when torchrun started several processes and none is initialized yet (gloo for
    CPU, NCCL for CUDA); True when this call created it. The group then lives as long as the process (ended at exit):
    destroying and re-creating it between two trainings races, since both use the same rendezvous keys."""
    if world()[1] == 1:
        return False
    if device.type == "cuda":
        torch.cuda.set_device(device)  # also under a caller's group: NCCL's collectives use the current device
    if dist.is_initialized():
        return False
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT)
    atexit.register(cleanup)
    return True


def cleanup() -> None:
    """End the process group (at exit, registered by `init_if_needed`)."""
    if dist.is_available() and dist.is_initialized():
        # Let gloo's worker threads drop the last collective's tensors first: that takes the GIL, and a thread that
        # asks for it once the interpreter is shutting down aborts the process (SIGABRT after a finished run).
        time.sleep(0.05)
        dist.destroy_process_group()


def barrier() -> None:
    if _active():
        dist.barrier()


def all_reduce_mean(values: list[float]) -> list[float]:
    """The mean of each value over the ranks, in one collective (float64)."""
    if not _active():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=_device())
    dist.all_reduce(t)
    return (t / dist.get_world_size()).tolist()


def broadcast(value: float) -> float:
    """Rank 0's value on every rank."""
    if not _active():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=_device())
    dist.broadcast(t, src=0)
    return float(t.item())


def all_gather(tensors: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """Every rank's `tensors` (same keys and shapes on each rank), on CPU, indexed by rank."""
    if not _active():
        return [tensors]
    out: list[dict[str, torch.Tensor]] = [{} for _ in range(dist.get_world_size())]
    for k, v in tensors.items():
        v = v.to(_device())
        parts = [torch.empty_like(v) for _ in out]
        dist.all_gather(parts, v)
        for r, p in enumerate(parts):
            out[r][k] = p.cpu()
    return out


class LossOf(nn.Module):
    """`model.loss` as a module's forward, so DistributedDataParallel's hooks see the loss (and sync its gradients)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        return self.model.loss(batch)


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """DDP around `model.loss` (call it with a batch); `model` itself stays the unwrapped module, for checkpoints.
    Wrapping broadcasts rank 0's parameters and buffers, so every rank starts from the same weights. Every trainable
    parameter must take part in every loss (DDP's default; freeze the others with requires_grad=False)."""
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(LossOf(model), device_ids=[device.index] if device.type == "cuda" else None)


def shard(batches: Iterable[Any], rank: int, world_size: int) -> Iterable[Any]:
    """Rank `rank`'s part of one epoch's batches: global batches rank, rank + world_size, ... of the complete groups
    (see the module docstring for how each kind of iterable is split). The iterable itself when world_size == 1."""
    if world_size == 1:
        return batches
    if isinstance(batches, DataLoader):
        if isinstance(batches.sampler, DistributedSampler):
            raise GenbaError("give the DataLoader without a DistributedSampler: the loop splits batches over ranks")
        if batches.batch_sampler is not None and not isinstance(batches.dataset, IterableDataset):
            return _loader_part(batches, rank, world_size)
    elif hasattr(batches, "__len__") and hasattr(batches, "__getitem__") and not isinstance(batches, Mapping):
        return (batches[i] for i in range(rank, len(batches) - len(batches) % world_size, world_size))
    return _strided(iter(batches), rank, world_size, check=True)


class Strided:
    """Every `world_size`-th item of `items` from `rank` on, in complete groups: an index-list batch sampler's part."""

    def __init__(self, items: Any, rank: int, world_size: int) -> None:
        self.items, self.rank, self.world_size = items, rank, world_size

    def __iter__(self) -> Iterator[Any]:
        return _strided(iter(self.items), self.rank, self.world_size, check=False)

    def __len__(self) -> int:
        return len(self.items) // self.world_size


def _loader_part(dl: DataLoader, rank: int, world_size: int) -> DataLoader:
    """The same loader drawing index lists from the same batch sampler (so from the same generator, in the same
    order) but loading only this rank's."""
    kw: dict[str, Any] = {}
    if dl.num_workers:
        kw = {"prefetch_factor": dl.prefetch_factor, "persistent_workers": dl.persistent_workers}
    return DataLoader(
        dl.dataset,
        batch_sampler=Strided(dl.batch_sampler, rank, world_size),
        num_workers=dl.num_workers,
        collate_fn=dl.collate_fn,
        pin_memory=dl.pin_memory,
        timeout=dl.timeout,
        worker_init_fn=dl.worker_init_fn,
        multiprocessing_context=dl.multiprocessing_context,
        generator=dl.generator,
        pin_memory_device=dl.pin_memory_device,
        in_order=dl.in_order,
        **kw,
    )


def _strided(items: Iterator[Any], rank: int, world_size: int, check: bool) -> Iterator[Any]:
    group: list[Any] = []
    for item in items:
        group.append(item)
        if len(group) < world_size:
            continue
        if check and _active():
            _check_same(group)
            check = False
        yield group[rank]
        group = []


def _check_same(group: list[Any]) -> None:
    """All ranks hold the same batches: compare a fingerprint (per batch: the float64 sum and size of each tensor)."""
    fp = torch.tensor([_fingerprint(b) for b in group], dtype=torch.float64)
    parts = all_gather({"fp": fp})
    if not all(torch.equal(p["fp"].nan_to_num(1.5), fp.nan_to_num(1.5)) for p in parts):
        raise GenbaError(
            "data(epoch) gave different batches on different ranks: under torchrun every rank must build the same "
            "sequence (seed it from the epoch, not from the rank or the global RNGs)"
        )


def _fingerprint(batch: Any) -> float:
    if isinstance(batch, torch.Tensor):
        return float(batch.sum(dtype=torch.float64)) + batch.numel() if batch.numel() else 0.0
    if isinstance(batch, Mapping):
        return sum((i + 1) * _fingerprint(v) for i, v in enumerate(batch.values()))
    if isinstance(batch, list | tuple):
        return sum((i + 1) * _fingerprint(v) for i, v in enumerate(batch))
    return 0.0


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _device() -> torch.device:
    """Where collective tensors live: NCCL reduces CUDA tensors only."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
