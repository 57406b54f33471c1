"""Keeping the garbage collector off what a process built to start."""

from __future__ import annotations

import gc


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
