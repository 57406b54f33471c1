"""Keeping the garbage collector off what a process built to start, and giving memory back."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import sys
from collections.abc import Callable


def settle_heap(collect: bool = True) -> None:
    """Move every object alive now (modules, settings, the app) out of the collector's reach.

    A long-running process starts with some 150,000 objects that live as long as it does;
    each full collection walks all of them (about 150 ms on a 2-core machine), stalling
    whatever the process was serving. Frozen, they are never walked again. Frozen before
    a fork, they stay on pages the child shares with its parent; the child freezes again
    without collecting, which would write to every one of those pages.
    """
    if collect:
        gc.collect()
    gc.freeze()


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
        return trim
    except (OSError, AttributeError):  # Not glibc (musl has no malloc_trim).
        return None


def give_back_free_memory() -> None:
    """Return the heap's free pages to the system (glibc's ``malloc_trim``).

    After a task that handled tens of megabytes in blocks just under glibc's (adaptive)
    mmap threshold, their freed memory stays in the heap, scattered between live blocks, and
    the process's resident set grows to each new peak and keeps it. A no-op elsewhere.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
