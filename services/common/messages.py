"""Celery task messages (protocol 2) built without a broker connection.

The API writes the message into the queue's Redis list itself, in the same round trip as
the task record, so it never blocks its event loop on kombu. A Celery worker consumes it
like any message ``send_task`` would have produced.
"""

from __future__ import annotations

import base64
import os
import socket
import uuid
from typing import Any

import orjson

PREDICT_TASK = "inferq.predict"
#: One chunk of a batch job (services.worker.batch_chunks).
BATCH_CHUNK_TASK = "inferq.batch_chunk"
#: One fit of a training job's search or cross-validation: a candidate on a fold
#: (services.worker.training).
TRAINING_FOLD_TASK = "inferq.training_fold"
#: The end of a training job: the final fit, its evaluation and its registration.
TRAINING_FINAL_TASK = "inferq.training_final"

_ORIGIN = f"{os.getpid()}@{socket.gethostname()}"
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def build_message(
    task_name: str,
    task_id: str,
    queue: str,
    kwargs: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> bytes:
    """The JSON envelope kombu's Redis transport stores in a queue's list."""
    body = orjson.dumps([[], kwargs, _EMBED])
    message = {
        "body": base64.b64encode(body).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            "lang": "py",
            "task": task_name,
            "id": task_id,
            "shadow": None,
            "eta": None,
            "expires": None,
            "group": None,
            "group_index": None,
            "retries": 0,
            "timelimit": [None, None],
            "root_id": task_id,
            "parent_id": None,
            "argsrepr": "()",
            "kwargsrepr": "{...}",
            "origin": _ORIGIN,
            "ignore_result": True,
            **(headers or {}),
        },
        "properties": {
            "correlation_id": task_id,
            "reply_to": "",
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return orjson.dumps(message)
