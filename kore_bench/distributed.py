"""Several processes (``accelerate launch --num_processes N -m kore_bench run ...``), one result.

Under a launcher every rank runs the same command. The runner decides on the main rank and
broadcasts (what to train, what to evaluate), every rank takes part in training (its share of
each global batch, gradients reduced by DDP / FSDP / DeepSpeed through accelerate) and in
evaluation (its share of the batches, answers gathered back in sample order), and only the main
rank writes. In one process every helper here is a no-op, so single-process runs are unchanged.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import torch

T = TypeVar("T")


def launched() -> bool:
    """True when a launcher started several processes (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init() -> None:
    """Join the process group the launcher set up (gloo on CPU, nccl on GPUs), once."""
    if launched() and not torch.distributed.is_initialized():
        from accelerate import PartialState

        PartialState(cpu=not torch.cuda.is_available())  # without CUDA, gloo (accelerate says NO otherwise)


def check_devices() -> None:
    """A launcher asking for more processes per machine than this machine has GPUs is refused
    (processes would share a GPU and run out of memory half-way through)."""
    from .errors import KoreBenchError

    local = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
    if local > 1 and torch.cuda.is_available() and local > torch.cuda.device_count():
        raise KoreBenchError(f"accelerate launched {local} processes on this machine but it has "
                             f"{torch.cuda.device_count()} GPU(s): set num_processes to at most that")


_alone = [0]  # > 0 inside alone(): this rank works by itself (e.g. the main rank building the base)


def active() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized() and world_size() > 1


def rank() -> int:
    """This process's rank among those working together (0 inside :func:`alone`)."""
    return torch.distributed.get_rank() if torch.distributed.is_initialized() and not _alone[0] else 0


def world_size() -> int:
    return torch.distributed.get_world_size() if torch.distributed.is_initialized() and not _alone[0] else 1


@contextmanager
def alone() -> Iterator[None]:
    """Inside: this rank trains and evaluates by itself (no collectives), e.g. the main rank
    building a cache entry the other ranks then read."""
    _alone[0] += 1
    try:
        yield
    finally:
        _alone[0] -= 1


def is_main() -> bool:
    """The process that writes (the launcher's rank 0; inside :func:`alone` too)."""
    return not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0


def barrier() -> None:
    if active():
        torch.distributed.barrier()


def broadcast(value: T) -> T:
    """The main rank's ``value`` on every rank (any picklable object)."""
    if not active():
        return value
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_sum(value: float | int | torch.Tensor) -> Any:
    """The sum over ranks (a number or a tensor, reduced in place on its own device)."""
    if not active():
        return value
    if isinstance(value, torch.Tensor):
        torch.distributed.all_reduce(value)
        return value
    t = torch.tensor([float(value)], dtype=torch.float64)
    torch.distributed.all_reduce(t)
    return type(value)(t.item()) if isinstance(value, int) else t.item()


def shard(items: Sequence[T]) -> Iterator[tuple[int, T]]:
    """``(index, item)`` of this rank's share: every ``world_size``-th item from its rank on."""
    for i in range(rank(), len(items), world_size()):
        yield i, items[i]


def gather(parts: dict[int, T], total: int) -> list[T]:
    """Every rank's ``{index: value}`` joined into the full list, in index order, on every rank."""
    if active():
        every: list[dict[int, T] | None] = [None] * world_size()
        torch.distributed.all_gather_object(every, parts)
        parts = {k: v for p in every for k, v in (p or {}).items()}
    missing = sorted(set(range(total)) - set(parts))
    if missing:
        raise RuntimeError(f"rank {rank()}: no result for {len(missing)} of {total} items (e.g. {missing[0]})")
    return [parts[i] for i in range(total)]


def on_main(fn: Callable[[], T]) -> T:
    """``fn()`` on the main rank, its result broadcast to the others (which wait)."""
    return broadcast(fn() if is_main() else None)


@contextmanager
def main_first() -> Iterator[None]:
    """The main rank runs the block first, by itself (e.g. builds a cache entry); the others after it
    (finding the entry built)."""
    if not is_main():
        barrier()
    with alone():
        yield
    if is_main():
        barrier()
