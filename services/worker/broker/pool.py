"""Celery's prefork pool, keeping track of the jobs its children will run after a flush.

When the consumer closes (a warm shutdown, or a lost broker connection) Celery flushes the
pool: it forgets every job no child has acknowledged yet, "redelivered by the broker".
A job already written into a child's pipe runs all the same, and the child, before it
exits, waits up to 30 s (billiard's ``_ensure_messages_consumed``) for the main process to
read its result; the main process, joining the pool, reads results only while it has jobs
to wait for, so the scale-in took 30 s more whenever a job had just been written when
SIGTERM came. Here such jobs stay known: their results are read and their children exit
at once, and what the pool forgot is exactly what no child will run
(``services.worker.batching`` hands that back to the queue).
"""

from __future__ import annotations

from typing import Any

from celery.concurrency import asynpool, prefork


class AsynPool(asynpool.AsynPool):
    def flush(self) -> None:
        # A job whose write to a child has begun is finished writing by the flush itself.
        written = {job_id: job for job_id, job in self._cache.items()
                   if not job._accepted and getattr(job, "_write_to", None) is not None}
        super().flush()
        for job_id, job in written.items():
            if job._write_to._is_alive():
                self._cache[job_id] = job


class TaskPool(prefork.TaskPool):
    Pool = AsynPool


def will_run(pool: Any, job: Any) -> bool:
    """Whether ``job``, as ``apply_async`` returned it, is still for a child to run."""
    cache = getattr(getattr(pool, "_pool", None), "_cache", None)
    if job is None or cache is None:
        return job is not None
    return job._job in cache
