"""The time limits a pool runs with: a soft limit only before the hard one, and the margin a
training task keeps before the hard limit when there is no soft one."""

from __future__ import annotations

import pytest

from services.common.pools import BATCH, TRAINING
from services.common.settings import Settings
from services.worker.celery_app import create_celery_app
from services.worker.training import hard_limit_margin


@pytest.mark.parametrize(("settings", "soft", "hard"), [
    (Settings(), TRAINING.soft_time_limit, TRAINING.hard_time_limit),
    (Settings(soft_time_limit=3, hard_time_limit=60), 3, 60),
    # A hard limit set alone, under the pool's default soft limit: no soft limit, or the
    # pool would arm the hard one only once the soft one passed.
    (Settings(hard_time_limit=5), None, 5),
    (Settings(soft_time_limit=5, hard_time_limit=5), None, 5),
])
def test_a_soft_limit_runs_only_before_the_hard_one(settings: Settings, soft: float | None,
                                                    hard: float) -> None:
    conf = create_celery_app(settings, TRAINING).conf
    assert (conf.task_soft_time_limit, conf.task_time_limit) == (soft, hard)


def test_other_pools_keep_their_default_limits() -> None:
    conf = create_celery_app(Settings(), BATCH).conf
    assert (conf.task_soft_time_limit, conf.task_time_limit) == (1740, 1800)


@pytest.mark.parametrize(("hard", "margin"), [(4, 1.0), (20, 5.0), (10800, 5.0)])
def test_a_training_task_ends_its_fit_a_margin_before_the_hard_limit(hard: float,
                                                                     margin: float) -> None:
    assert hard_limit_margin(hard) == margin
