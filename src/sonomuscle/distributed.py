"""Inference and evaluation over several processes (``torchrun``): each rank takes its share of the cases and
writes its part of each table, and rank 0 joins the parts into the table one process would have written.

Shares are contiguous runs of the case list in rank order, so the joined table has the rows in the order
a single process writes them, each once. A lone process (no process group) is rank 0 of 1: everything here
is then the identity.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch.distributed as dist

from sonomuscle.io import atomic_write_rows, read_rows

T = TypeVar("T")


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes; ``(0, 1)`` without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def rank_share(cases: Sequence[T]) -> list[T]:
    """This rank's contiguous share of ``cases`` (sizes differ by one at most; none duplicated or padded)."""
    rank, world = rank_and_world()
    if world == 1:
        return list(cases)
    return [cases[i] for i in np.array_split(np.arange(len(cases)), world)[rank]]


def rank_part(path: str | os.PathLike, rank: int) -> Path:
    """Where ``rank`` writes its part of the table ``path`` (hidden beside it until joined)."""
    path = Path(path)
    return path.with_name(f".{path.stem}.rank{rank}{path.suffix}")


def join_rank_parts(path: str | os.PathLike) -> None:
    """After every rank wrote its part of ``path``: rank 0 joins the parts, in rank order, into ``path``.

    A rank that wrote no row (e.g. every case it had was skipped) has no part. Every rank waits until the
    table is there, so none goes on while it is incomplete.
    """
    rank, world = rank_and_world()
    if world == 1:
        return
    dist.barrier()
    if rank == 0:
        parts = [rank_part(path, r) for r in range(world)]
        rows = [row for part in parts if part.is_file() for row in read_rows(part)]
        if rows:
            atomic_write_rows(path, rows)
        for part in parts:
            part.unlink(missing_ok=True)
    dist.barrier()


def is_rank_zero() -> bool:
    """Whether this process writes what is written once (an evaluation report, a summary): rank 0, or alone.

    In a config, ``"$<step> if is_rank_zero() else None"`` runs the step there only, then
    ``"$wait_for_ranks()"`` holds the others until it is done."""
    return rank_and_world()[0] == 0


def wait_for_ranks() -> None:
    """Every rank waits here for the others (nothing to wait for in a lone process)."""
    if rank_and_world()[1] > 1:
        dist.barrier()
