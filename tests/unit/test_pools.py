"""Worker pools: a pool is named, has a kind whose defaults it takes, and consumes a queue."""

from __future__ import annotations

import pytest

from services.common.pools import INFERENCE, TRAINING, VISIBILITY_MARGIN, get_pool, pool


def test_a_default_pool_is_its_kind_on_the_queue_of_its_name() -> None:
    assert pool("inference") == INFERENCE
    assert (INFERENCE.name, INFERENCE.kind, INFERENCE.queue) == ("inference",) * 3


def test_an_added_pool_takes_its_kinds_defaults() -> None:
    gpu = pool("training-gpu", kind="training")
    assert (gpu.name, gpu.kind, gpu.queue) == ("training-gpu", "training", "training-gpu")
    assert gpu.hard_time_limit == TRAINING.hard_time_limit
    assert pool("inference", queue="online").queue == "online"


@pytest.mark.parametrize(("args", "complaint"), [
    (("gpu", None, None), "pool 'gpu' is not a kind (inference, batch, training): give its kind"),
    (("gpu", "serving", None), "unknown pool kind 'serving'"),
    (("GPU", "training", None), "pool name 'GPU' must be lowercase"),
    (("gpu", "training", "gpu jobs"), "queue name 'gpu jobs' must be lowercase"),
])
def test_bad_pools_are_refused_by_name(args: tuple[str, str | None, str | None],
                                       complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint.replace("(", r"\(").replace(")", r"\)")):
        pool(*args)


def test_batch_limits_come_from_the_pool_unless_settings_override_them() -> None:
    from services.common.settings import Settings
    from services.worker.policy import BatchLimits

    inference = BatchLimits.for_pool(Settings(), INFERENCE)
    assert (inference.max_rows, inference.max_wait, inference.inline_max) == (256, 0.0, 0.002)
    assert BatchLimits.for_pool(Settings(), pool("batch")).inline_max == 0.0
    tuned = BatchLimits.for_pool(
        Settings(batch_max_rows=64, batch_max_wait_ms=5, inline_max_ms=0), INFERENCE)
    assert (tuned.max_rows, tuned.max_wait, tuned.inline_max) == (64, 0.005, 0.0)


def test_the_visibility_timeout_outlasts_the_hard_limit_the_worker_runs_with() -> None:
    from services.common.settings import Settings
    from services.worker.celery_app import create_celery_app

    def visibility(settings: Settings) -> float:
        options = create_celery_app(settings, TRAINING).conf.broker_transport_options
        return float(options["visibility_timeout"])

    assert visibility(Settings()) == TRAINING.hard_time_limit + VISIBILITY_MARGIN
    # A hard limit set for the deployment moves it, down as well as up...
    assert visibility(Settings(hard_time_limit=30)) == 30 + VISIBILITY_MARGIN
    assert visibility(Settings(hard_time_limit=20000)) == 20000 + VISIBILITY_MARGIN
    # ...unless a visibility timeout is set too.
    assert visibility(Settings(hard_time_limit=30, visibility_timeout=45)) == 45


def test_batch_children_are_replaced_past_their_memory_bound_and_a_setting_overrides_it() -> None:
    from services.common.settings import Settings
    from services.worker.celery_app import create_celery_app

    def bound(settings: Settings, kind: str) -> object:
        return create_celery_app(settings, get_pool(kind)).conf.worker_max_memory_per_child

    assert bound(Settings(), "batch") == 480 * 1024  # KiB, as Celery takes it.
    assert bound(Settings(), "inference") is None
    assert bound(Settings(worker_max_memory_mib=0), "batch") is None
    assert bound(Settings(worker_max_memory_mib=900), "inference") == 900 * 1024
