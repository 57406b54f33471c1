"""Redis key names, defined once for the API, the workers, the chart and the tests.

A queue is one Redis list named after the queue. What a pool's workers hold (reserved or
running) sits in that pool's own ``unacked`` hash, so the pool's backlog is
``LLEN <queue> + HLEN unacked_key(<queue>)``: exactly what KEDA's Redis scaler adds up.

Each API process listens on a channel of its own, ``events_channel(<process id>)``; a task's
record names the channels its terminal event goes to (see ``records``).
"""

from __future__ import annotations

from services.common.tenants import DEFAULT_TENANT

PREFIX = "inferq:"


#: What names a channel that takes the ends of several tasks in one message, as every API
#: process's own does (``records.split_events``). A channel without it (an API process of
#: an earlier release) is told of each task in a message of its own.
BATCHED_EVENTS = f"{PREFIX}events:batched:"


def events_channel(process_id: str) -> str:
    """The channel on which the API process ``process_id`` hears of its tasks' ends."""
    return f"{BATCHED_EVENTS}{process_id}"


#: The channel on which a change of a model's versions or aliases is announced, the
#: model's name the message (``services.common.model_events``).
MODELS_CHANNEL = f"{PREFIX}models"


def task_key(task_id: str) -> str:
    return f"{PREFIX}task:{task_id}"


def job_key(job_id: str) -> str:
    """A batch job's record (see ``services.common.jobs``)."""
    return f"{PREFIX}job:{job_id}"


def job_done_key(job_id: str) -> str:
    """The chunks of a job whose outputs are written and counted, as a set."""
    return f"{PREFIX}job:{job_id}:done"


def job_attempts_key(job_id: str) -> str:
    """How often each chunk of a job was started, as a hash."""
    return f"{PREFIX}job:{job_id}:attempts"


def training_folds_key(job_id: str) -> str:
    """The fold results of a training job, as a hash: ``<candidate>:<fold>`` to a JSON
    object (metrics, and the worker that computed them)."""
    return f"{PREFIX}job:{job_id}:folds"


#: The overall metrics of the latest training job that succeeded, per model, as a hash of
#: model name (``tenants.model_event``: ``<tenant>/<name>`` for a tenant's own model) to a
#: JSON object: what ``inferq_training_metric`` exports.
TRAINING_METRICS = f"{PREFIX}training:metrics"

#: Every job's id (batch and training), scored by the time it was submitted: the sweep of
#: expired jobs' outputs. Listings read the tenants' own indexes (``tenant_jobs_index``).
JOBS_INDEX = f"{PREFIX}jobs"
#: The ids of the batch jobs queued or running, as a set: what the API's exporter reads
#: every few seconds, whatever the number of ended jobs kept.
JOBS_ACTIVE = f"{PREFIX}jobs:active"
#: The tenants' jobs indexes (``tenant_jobs_index``), as a set of key names: the sweep trims
#: each of them as it trims ``JOBS_INDEX``.
TENANT_JOBS_INDEXES = f"{PREFIX}jobs:indexes"


def tenant_jobs_index(tenant: str, kind: str) -> str:
    """The index of ``tenant``'s jobs of ``kind`` (``batch``, ``training``), scored as
    ``JOBS_INDEX``: what the tenant's listing reads, so that another tenant's jobs, however
    many, never push its own out of it."""
    return f"{JOBS_INDEX}:{kind}:{tenant}"


def queue_key(queue: str) -> str:
    return queue


def unacked_key(queue: str) -> str:
    return f"{PREFIX}unacked:{queue}"


def unacked_index_key(queue: str) -> str:
    return f"{PREFIX}unacked_index:{queue}"


def unacked_mutex_key(queue: str) -> str:
    return f"{PREFIX}unacked_mutex:{queue}"


def pulling_key(queue: str, consumer: str) -> str:
    """Where a worker's consumer ``consumer`` moves a message it takes off ``queue`` until
    the message is recorded as held: a message is always in some key."""
    return f"{PREFIX}pulling:{queue}:{consumer}"


def pullers_key(queue: str) -> str:
    """The consumers pulling from ``queue``, each scored by the time (Redis's clock, in
    seconds) until which it counts as alive (see ``pullers``)."""
    return f"{PREFIX}pullers:{queue}"


def dataset_record_key(dataset_id: str) -> str:
    """The hash of one dataset's record (``services.common.datasets``)."""
    return f"{PREFIX}dataset:{dataset_id}"


#: Every dataset's id, scored by its ``created_at``: the listing, newest first. The default
#: tenant's datasets; each other tenant has its own index (``datasets_index``).
DATASETS_INDEX = f"{PREFIX}datasets"


def datasets_index(tenant: str) -> str:
    """The index of ``tenant``'s datasets, as ``DATASETS_INDEX``."""
    return DATASETS_INDEX if tenant == DEFAULT_TENANT else f"{DATASETS_INDEX}:{tenant}"


def api_key_key(key_id: str) -> str:
    """The hash of one API key's record: its tenant, scopes, keyed hash, limits, expiry,
    revocation and last use (``services.common.api_keys``)."""
    return f"{PREFIX}apikey:{key_id}"


#: Every API key's id, scored by its ``created_at``: the listing.
API_KEYS_INDEX = f"{PREFIX}apikeys"

#: The channel on which a change to a key (revoked, limits changed) is announced, the
#: key's id the message: every API process drops what it cached of that key.
API_KEYS_CHANNEL = f"{PREFIX}apikeys:changed"


def rate_limit_key(key_id: str, kind: str, window: int) -> str:
    """The counter of one key's ``kind`` (requests, rows) in one time window."""
    return f"{PREFIX}ratelimit:{key_id}:{kind}:{window}"
