"""What the OpenAPI document says of each route's answers, errors and hand-read inputs.

``predict`` and ``get_task`` parse their body and query directly (they are the hot path),
so FastAPI cannot infer their request body or their answers; these are written here, once.
Error examples are built from the error classes themselves, so their codes and statuses
are those the API answers.
"""

from __future__ import annotations

from typing import Any

from services.api import openapi_examples as examples
from services.api.errors import (
    AliasNotFound,
    ApiError,
    ApiKeyNotFound,
    ApiKeysUnavailable,
    DatasetNotFound,
    InsufficientScope,
    InvalidAlias,
    InvalidApiKey,
    InvalidApiKeySpec,
    InvalidDataset,
    InvalidParameter,
    InvalidRows,
    InvalidTrainingSpec,
    JobNotCancellable,
    JobNotFound,
    JobNotSucceeded,
    MalformedBody,
    ModelNotFound,
    PayloadTooLarge,
    RedisFull,
    RedisUnavailable,
    SharedModel,
    StorageUnavailable,
    TaskNotCancellable,
    TaskNotFound,
    TooManyRows,
    Unauthenticated,
    UnfitColumns,
    UnsupportedMediaType,
    VersionNotFound,
    error_body,
    wait_out_of_range,
)
from services.api.rate_limit import RateLimited
from services.api.validation import FINITE_VALUES, MAX_MAGNITUDE
from services.common.settings import Settings

#: The default INFERQ_MAX_WAIT_SECONDS, which the document states.
_MAX_WAIT: float = Settings.model_fields["max_wait_seconds"].default

#: ``{"error": {...}}``, the body of every error.
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string", "description": "snake_case error code"},
                "message": {"type": "string", "description": "what is wrong, for a person"},
                "details": {"type": "object"},
            },
        }
    },
}

TASK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["task_id", "status", "model", "version", "submitted_at"],
    "properties": {
        "task_id": {"type": "string"},
        "status": {"enum": ["queued", "running", "succeeded", "failed", "cancelled"]},
        "model": {"type": "string"},
        "version": {"type": "integer"},
        "submitted_at": {"type": "string", "format": "date-time"},
        "started_at": {"type": ["string", "null"], "format": "date-time"},
        "finished_at": {"type": ["string", "null"], "format": "date-time"},
        "result": {
            "type": "object",
            "properties": {"predictions": {"type": "array"},
                           "probabilities": {"type": "array", "items": {"type": "array"}}},
        },
        "error": {"type": "object", "description": "why a failed task failed", "properties": {
            "type": {"type": "string", "description": "the error's class, e.g. WorkerLost"},
            "code": {"type": "string", "description": "for a known cause, a snake_case code: "
                     "non_finite_values when the model overflowed to infinity or NaN; worker_lost, "
                     "soft_time_limit_exceeded, time_limit_exceeded when the platform ended it"},
            "message": {"type": "string"}}},
        "trace_id": {"type": ["string", "null"]},
    },
}

WAIT_PARAMETER: dict[str, Any] = {
    "name": "wait",
    "in": "query",
    "required": False,
    "description": "seconds to wait for the result (0 to INFERQ_MAX_WAIT_SECONDS, "
    f"{_MAX_WAIT:g} by default); 0 answers at once",
    "schema": {"type": "number", "minimum": 0, "default": 0},
}

PREDICT_VERSION_PARAMETER: dict[str, Any] = {
    "name": "version",
    "in": "query",
    "required": False,
    "description": "the model version to use, as the body's `version`; when both are given "
    "they must agree. By default the version the alias `production` points at, else the "
    "latest",
    "schema": {"type": "integer", "minimum": 1},
}

PREDICT_ALIAS_PARAMETER: dict[str, Any] = {
    "name": "alias",
    "in": "query",
    "required": False,
    "description": "an alias of the model (`PUT /v1/models/{model}/aliases/{alias}`), as "
    "the body's `alias`, in place of a version; with a version it is a 400",
    "schema": {"type": "string", "minLength": 1},
    "example": "staging",
}

#: A feature's value: a number, or for a string feature (a trained model's text column) a
#: string or null.
_FEATURE_VALUE = {"type": ["number", "string", "null"]}

PREDICT_BODY: dict[str, Any] = {
    "required": True,
    "content": {"application/json": {"schema": {
        "type": "object",
        "required": ["instances"],
        "additionalProperties": False,
        "properties": {
            "instances": {
                "type": "array",
                "minItems": 1,
                "description": "rows in the model's feature order, or objects keyed by "
                "feature name (GET /v1/models/{model} lists them with their dtypes); a "
                f"numeric feature's value a finite number between {-MAX_MAGNITUDE!r} and "
                f"{MAX_MAGNITUDE!r}, a string feature's a string or null",
                "items": {"oneOf": [{"type": "array", "items": _FEATURE_VALUE},
                                    {"type": "object",
                                     "additionalProperties": _FEATURE_VALUE}]},
            },
            "version": {"type": "integer", "minimum": 1,
                        "description": "a version of the model; by default the one the "
                        "alias `production` points at, else the latest"},
            "alias": {"type": "string", "minLength": 1,
                      "description": "an alias of the model, in place of a version"},
            "return_probabilities": {"type": "boolean", "default": False},
        },
    }, "examples": {
        "rows": {"summary": "rows in feature order",
                 "value": {"instances": [[5.1, 3.5, 1.4, 0.2]], "return_probabilities": True}},
        "named": {"summary": "rows by feature name, at a given version", "value": {
            "instances": [{"sepal_length_cm": 6.7, "sepal_width_cm": 3.0,
                           "petal_length_cm": 5.2, "petal_width_cm": 2.3}], "version": 1}},
        "alias": {"summary": "rows for the version an alias points at",
                  "value": {"instances": [[5.1, 3.5, 1.4, 0.2]], "alias": "staging"}},
    }}},
}


def _task(description: str, **tasks: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {
        "schema": TASK_SCHEMA,
        "examples": {status: {"value": task} for status, task in tasks.items()},
    }}}


def _example(description: str, value: dict[str, Any]) -> dict[str, Any]:
    """A 200 whose schema FastAPI takes from the route's response model."""
    return {"description": description, "content": {"application/json": {"example": value}}}


def _error(description: str, *errors: ApiError) -> dict[str, Any]:
    """A documented error answer; its description names the codes ``errors`` have, and
    each is an example."""
    codes = list(dict.fromkeys(e.code for e in errors))
    named: dict[str, Any] = {}
    for e in errors:
        name = e.code if e.code not in named else f"{e.code}_{len(named)}"
        named[name] = {"summary": e.message, "value": error_body(e)}
    return {
        "description": f"{description} ({', '.join(f'`{c}`' for c in codes)})" if errors
        else description,
        "content": {"application/json": {"schema": ERROR_SCHEMA, "examples": named}},
    }


_BAD_WAIT = wait_out_of_range(f"{_MAX_WAIT * 1.5:g}", _MAX_WAIT)
_NO_MODEL = ModelNotFound("no model named 'irsi'; GET /v1/models lists the models",
                          {"model": "irsi"})
_NO_VERSION = VersionNotFound("model 'iris' has no version 7; it has 1, 2",
                              {"model": "iris", "version": 7, "versions": [1, 2]})
_NO_ALIAS = AliasNotFound("model 'iris' has no alias 'canary'; its aliases are production, "
                          "staging", {"model": "iris", "alias": "canary",
                                      "aliases": ["production", "staging"]})
_VERSION_AND_ALIAS = InvalidParameter("version 1 and alias 'staging' both given; give one "
                                      "of them", {"parameter": "alias", "version": 1,
                                                  "alias": "staging"})
_NO_TASK = TaskNotFound(
    f"no task {examples.TASK_ID!r}: it was never submitted or its record expired",
    {"task_id": examples.TASK_ID})
_UNREACHABLE = RedisUnavailable("Redis is unreachable; retry in a moment")
_REDIS_503 = _error("Redis is unreachable; retry after `Retry-After` seconds", _UNREACHABLE)
# Stands in for FastAPI's default 422 where nothing in a request can fail its validation.
_OTHER = _error("another client error, such as 405 `method_not_allowed` (with `Allow`)")

PREDICT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _task("the task, finished within `wait`",
               succeeded=examples.SUCCEEDED, failed=examples.FAILED),
    202: _task("the task, queued or running; `Location` is where to follow it",
               queued=examples.QUEUED),
    400: _error(
        "a malformed body, a bad `wait` or `version`, or both a version and an alias",
        MalformedBody('"instances" must be a non-empty list of rows', {"field": "instances"}),
        MalformedBody(f"NaN at line 1 column 32: NaN and Infinity are not allowed; {FINITE_VALUES}",
                      {"line": 1, "column": 32}),
        _BAD_WAIT,
        _VERSION_AND_ALIAS,
    ),
    404: _error("no such model, version or alias", _NO_MODEL, _NO_VERSION, _NO_ALIAS),
    413: _error(
        "too many rows or bytes",
        TooManyRows("10001 rows exceed the limit of 10000 rows per request; split the request",
                    {"rows": 10001, "max_rows": 10000}),
        PayloadTooLarge("the request body exceeds the limit of 10485760 bytes; split the "
                        "request", {"max_bytes": 10485760}),
    ),
    422: _error(
        "rows that do not fit the model's features, or values beyond what models hold; the "
        "message names row and column",
        InvalidRows("row 0, column 2 ('petal_length_cm') is a string; expected a number",
                    {"row": 0, "column": "petal_length_cm"}),
        InvalidRows("row 1, column 3 ('petal_width_cm') is 1e+308, out of the allowed range "
                    f"{-MAX_MAGNITUDE:.7g} to {MAX_MAGNITUDE:.7g}",
                    {"row": 1, "column": "petal_width_cm", "min": -MAX_MAGNITUDE,
                     "max": MAX_MAGNITUDE}),
    ),
    "4XX": _OTHER,
    503: _error(
        "Redis is unreachable, or full: its `maxmemory` is reached and new tasks are refused "
        "until workers drain it or finished records expire; retry after `Retry-After` seconds",
        _UNREACHABLE,
        RedisFull("Redis is full (its maxmemory is reached): new tasks are refused until "
                  "workers drain the queues or finished records expire; retry later"),
    ),
}

TASK_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _task("the task, in a terminal state or as it was when `wait` ran out",
               succeeded=examples.SUCCEEDED, running=examples.RUNNING, failed=examples.FAILED),
    400: _error("a malformed `wait`", _BAD_WAIT),
    404: _error("no such task, or its record expired", _NO_TASK),
    "4XX": _OTHER,
    503: _REDIS_503,
}



_STORE_503 = _error("the model store is unreachable; retry after `Retry-After` seconds",
                    StorageUnavailable("the object store (models, datasets) is unreachable "
                                       "or refused access; retry in a moment"))

MODEL_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _example("the version's metadata, its aliases, and the version served by default",
                  examples.MODEL_DESCRIPTION),
    400: _error("a malformed `version`, or both a version and an alias", InvalidParameter(
        "version: Input should be greater than or equal to 1", {"parameter": "version"}),
        _VERSION_AND_ALIAS),
    404: _error("no such model, version or alias", _NO_MODEL, _NO_VERSION, _NO_ALIAS),
    "4XX": _OTHER,
    503: _STORE_503,
}

VERSIONS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _example("every version, oldest first, with its metadata and aliases",
                  examples.MODEL_VERSIONS),
    404: _error("no such model", _NO_MODEL),
    "4XX": _OTHER,
    503: _STORE_503,
}

ALIAS_BODY: dict[str, Any] = {
    "required": True,
    "content": {"application/json": {"schema": {
        "type": "object",
        "required": ["version"],
        "additionalProperties": False,
        "properties": {"version": {"type": "integer", "minimum": 1,
                                   "description": "a version of the model"}},
    }, "example": {"version": 2}}},
}

_SHARED_ALIAS = SharedModel(
    "model 'iris' is shared by every tenant; only the operator changes its aliases and "
    "versions", {"model": "iris"})

ALIAS_PUT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _example("the alias and the version it now points at",
                  {"model": "iris", "alias": "production", "version": 2}),
    403: _error("a shared model, and the caller is not the operator's tenant", _SHARED_ALIAS),
    404: _error("no such model or version", _NO_MODEL, _NO_VERSION),
    422: _error(
        "a body that is not `{\"version\": N}`, or a bad alias name",
        InvalidAlias('the body must be {"version": N}, N a version of the model',
                     {"field": "version"}),
        InvalidAlias("invalid alias name 'Prod': use lowercase letters, digits, '.', '_', "
                     "'-', starting with a letter or digit, at most 63 characters",
                     {"alias": "Prod"})),
    "4XX": _OTHER,
    503: _STORE_503,
}

ALIAS_DELETE_RESPONSES: dict[int | str, dict[str, Any]] = {
    204: {"description": "the alias is removed"},
    403: _error("a shared model, and the caller is not the operator's tenant", _SHARED_ALIAS),
    404: _error("no such model or alias", _NO_MODEL, _NO_ALIAS),
    "4XX": _OTHER,
    503: _STORE_503,
}

CANCEL_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _task("the task, cancelled", cancelled=examples.CANCELLED),
    404: _error("no such task, or its record expired", _NO_TASK),
    409: _error("the task is already running or finished", TaskNotCancellable(
        f"task {examples.TASK_ID} is succeeded; only a queued task can be cancelled",
        {"task_id": examples.TASK_ID, "status": "succeeded"})),
    "4XX": _OTHER,
    503: _REDIS_503,
}

LIST_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _example("every model, its versions and aliases", examples.MODEL_LIST),
    "4XX": _OTHER,
    503: _STORE_503,
}

POOLS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _example("each pool's backlog", examples.POOL_LIST),
    "4XX": _OTHER,
    503: _REDIS_503,
}

READY_RESPONSES: dict[int | str, dict[str, Any]] = {
    503: _error("Redis does not answer", RedisUnavailable("Redis does not answer")),
}

METRICS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "the Prometheus text format; OpenMetrics (with exemplars) when the "
          "`Accept` header asks for `application/openmetrics-text`",
          "content": {
              "text/plain": {"schema": {"type": "string"}, "example":
                  "# HELP inferq_tasks_submitted_total Tasks accepted by the API.\n"
                  "# TYPE inferq_tasks_submitted_total counter\n"
                  'inferq_tasks_submitted_total{model="iris",queue="inference"} 42.0\n'},
              "application/openmetrics-text": {"schema": {"type": "string"}},
          }},
}

_BINARY = {"type": "string", "format": "binary"}

DATASET_UPLOAD_BODY: dict[str, Any] = {
    "required": True,
    "description": "the file itself, streamed: CSV with a header row, JSON Lines (one object "
    "a line; the columns are the union of the keys, a missing key is null) or Parquet; at "
    "most INFERQ_MAX_DATASET_BYTES (5 GiB by default)",
    "content": {
        "text/csv": {"schema": _BINARY, "example": examples.CSV_UPLOAD},
        "application/x-ndjson": {"schema": _BINARY, "example": examples.JSONL_UPLOAD},
        "application/vnd.apache.parquet": {"schema": _BINARY},
    },
}

_NO_DATASET = DatasetNotFound(f"no dataset {examples.DATASET_ID!r}; GET /v1/datasets lists them",
                              {"dataset_id": examples.DATASET_ID})
_STORAGE_OR_REDIS_503 = _error(
    "Redis or the dataset store is unreachable; retry after `Retry-After` seconds",
    _UNREACHABLE, StorageUnavailable("the dataset store failed; retry in a moment"))

UPLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    201: _example("the dataset, stored; `Location` is its address", examples.DATASET),
    400: _error(
        "a file that is not what its type says, or a missing or bad `name`; the message "
        "names the line (1-based) and the row (0-based, the header not counted)",
        InvalidDataset("line 3 has 4 fields; the header has 5",
                       {"line": 3, "row": 1, "format": "csv"}),
        InvalidDataset("line 2 is not valid JSON: unexpected end of data: line 1 column 22 "
                       "(char 21)", {"line": 2, "row": 1, "format": "jsonl"}),
        InvalidDataset("line 1 holds only numbers (5.1,3.5,1.4,0.2): a CSV needs a header "
                       "row naming its columns first", {"line": 1, "format": "csv"}),
        InvalidDataset("the file is empty", {"format": "csv"}),
        InvalidParameter("name: Field required", {"parameter": "name"}),
    ),
    413: _error("the file exceeds INFERQ_MAX_DATASET_BYTES; nothing is kept", PayloadTooLarge(
        "the file exceeds the limit of 5368709120 bytes per dataset (INFERQ_MAX_DATASET_BYTES)",
        {"max_bytes": 5368709120})),
    415: _error("a `Content-Type` that is not a dataset type", UnsupportedMediaType(
        "Content-Type 'application/json' is not a dataset type; send text/csv, "
        "application/x-ndjson, application/vnd.apache.parquet",
        {"content_type": "application/json",
         "supported": ["text/csv", "application/x-ndjson", "application/vnd.apache.parquet"]})),
    "4XX": _OTHER,
    503: _STORAGE_OR_REDIS_503,
}

DATASET_LIST_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _example("the datasets, newest first", examples.DATASET_LIST),
    400: _error("a bad `limit`", InvalidParameter(
        "limit: Input should be less than or equal to 1000", {"parameter": "limit"})),
    "4XX": _OTHER,
    503: _REDIS_503,
}

DATASET_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _example("the dataset", examples.DATASET),
    404: _error("no such dataset", _NO_DATASET),
    "4XX": _OTHER,
    503: _REDIS_503,
}

DELETE_DATASET_RESPONSES: dict[int | str, dict[str, Any]] = {
    204: {"description": "the dataset and its file are deleted"},
    404: _error("no such dataset", _NO_DATASET),
    "4XX": _OTHER,
    503: _STORAGE_OR_REDIS_503,
}


def _job(description: str, **examples_: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {
        "schema": {"type": "object", "required": ["job_id", "status", "progress"]},
        "examples": {status: {"value": job} for status, job in examples_.items()},
    }}}


_NO_JOB = JobNotFound(
    f"no batch job {examples.JOB_ID!r}: it was never submitted or its record expired",
    {"job_id": examples.JOB_ID})

JOB_SUBMIT_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: _job("the job, queued; `Location` is where to follow it", queued=examples.JOB_QUEUED),
    400: _error("a malformed body, or both a version and an alias", InvalidParameter(
        "body.max_failed_rows: Input should be greater than or equal to 0",
        {"parameter": "body.max_failed_rows"}), InvalidParameter(
        "body: Value error, version 1 and alias 'staging' both given; give one of them",
        {"parameter": "body"})),
    404: _error("no such model, version, alias or dataset", _NO_MODEL, _NO_VERSION, _NO_ALIAS,
                DatasetNotFound("no dataset 'f00d'; GET /v1/datasets lists the datasets",
                                {"dataset_id": "f00d"})),
    422: _error("the dataset lacks a column the job needs, or a column is named wrongly",
                UnfitColumns(
                    "dataset 3f2c9a7e5b1d4e8f9a0b1c2d3e4f5a6b lacks the column "
                    "'petal_width_cm' that iris v1 takes as features; its features are "
                    "sepal_length_cm, sepal_width_cm, petal_length_cm, petal_width_cm",
                    {"missing_columns": ["petal_width_cm"]})),
    "4XX": _OTHER,
    503: _REDIS_503,
}

JOB_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _job("the job, ended or as it was when `wait` ran out",
              succeeded=examples.JOB_SUCCEEDED, running=examples.JOB_RUNNING,
              failed=examples.JOB_FAILED),
    400: _error("a malformed `wait`", _BAD_WAIT),
    404: _error("no such job, or its record expired", _NO_JOB),
    "4XX": _OTHER,
    503: _REDIS_503,
}

JOB_LIST_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _example("jobs, newest first", {"jobs": [examples.JOB_RUNNING]}),
    "4XX": _OTHER,
    503: _REDIS_503,
}

JOB_CANCEL_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _job("the job, cancelled", cancelled=examples.JOB_CANCELLED),
    404: _error("no such job, or its record expired", _NO_JOB),
    409: _error("the job already ended", JobNotCancellable(
        f"batch job {examples.JOB_ID} is succeeded; only a queued or running job can be "
        "cancelled", {"job_id": examples.JOB_ID, "status": "succeeded"})),
    "4XX": _OTHER,
    503: _REDIS_503,
}

JOB_RESULTS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "the output file, in the job's format", "content": {
        "text/csv": {"schema": {"type": "string"}, "example":
                     "row,customer_id,prediction,probability_setosa,probability_versicolor,"
                     "probability_virginica\n0,c-0001,setosa,0.979,0.021,0\n"},
        "application/x-ndjson": {"schema": {"type": "string"}},
        "application/vnd.apache.parquet": {"schema": {"type": "string",
                                                      "format": "binary"}},
    }},
    404: _error("no such job, or its record expired", _NO_JOB),
    409: _error("the job has not succeeded", JobNotSucceeded(
        f"batch job {examples.JOB_ID} is running; its results exist once it succeeded",
        {"job_id": examples.JOB_ID, "status": "running"})),
    "4XX": _OTHER,
    503: _REDIS_503,
}

JOB_ERRORS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "one JSON object a line per rejected row", "content": {
        "application/x-ndjson": {"schema": {"type": "string"}, "example":
                                 '{"row":17,"id":"c-0018","code":"not_a_number","message":'
                                 '"column \'petal_length_cm\' is the string \'n/a\'; '
                                 'expected a number"}\n'}}},
    404: _error("no such job, or its record expired", _NO_JOB),
    "4XX": _OTHER,
    503: _REDIS_503,
}


def _training(description: str, **examples_: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {
        "schema": {"type": "object", "required": ["job_id", "status", "phase", "progress"]},
        "examples": {status: {"value": job} for status, job in examples_.items()},
    }}}


_NO_TRAINING_JOB = JobNotFound(
    f"no training job {examples.TRAINING_JOB_ID!r}: it was never submitted or its record "
    "expired", {"job_id": examples.TRAINING_JOB_ID})

TRAINING_SUBMIT_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: _training("the job, queued; `Location` is where to follow it",
                   queued=examples.TRAINING_QUEUED),
    400: _error("a malformed body", InvalidParameter(
        "body.estimator: Field required", {"parameter": "body.estimator"})),
    403: _error("a shared model the caller's tenant has no own model of", SharedModel(
        "model 'iris' is shared by every tenant; only the operator adds versions to it. "
        "Train under another name", {"model": "iris"})),
    404: _error("no such dataset", DatasetNotFound(
        "no dataset 'f00d'; GET /v1/datasets lists the datasets", {"dataset_id": "f00d"})),
    422: _error(
        "a spec the platform cannot run; `details.field` names what to change",
        InvalidTrainingSpec(
            "unknown estimator 'RandomForest'; the allow-list has RandomForestClassifier, "
            "RandomForestRegressor, ...", {"field": "estimator"}),
        InvalidTrainingSpec(
            "RandomForestClassifier has no hyperparameter 'max_dept'",
            {"field": "hyperparameters.max_dept"}),
        InvalidTrainingSpec(
            "the dataset has no column 'churn'", {"field": "target_column"}),
        InvalidTrainingSpec(
            "target column 'price' holds continuous values: a classifier needs classes",
            {"field": "target_column", "target_column": "price"})),
    "4XX": _OTHER,
    503: _STORAGE_OR_REDIS_503,
}

TRAINING_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _training("the job, ended or as it was when `wait` ran out",
                   succeeded=examples.TRAINING_SUCCEEDED, running=examples.TRAINING_RUNNING,
                   failed=examples.TRAINING_FAILED),
    400: _error("a malformed `wait`", _BAD_WAIT),
    404: _error("no such job, or its record expired", _NO_TRAINING_JOB),
    "4XX": _OTHER,
    503: _REDIS_503,
}

TRAINING_LIST_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _example("jobs, newest first", {"jobs": [examples.TRAINING_RUNNING]}),
    "4XX": _OTHER,
    503: _REDIS_503,
}

TRAINING_CANCEL_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _training("the job, cancelled", cancelled=examples.TRAINING_CANCELLED),
    404: _error("no such job, or its record expired", _NO_TRAINING_JOB),
    409: _error("the job already ended, or is registering its version", JobNotCancellable(
        f"training job {examples.TRAINING_JOB_ID} is succeeded; only a queued or running "
        "job can be cancelled, before it registers its version",
        {"job_id": examples.TRAINING_JOB_ID, "status": "succeeded"})),
    "4XX": _OTHER,
    503: _REDIS_503,
}

_NO_API_KEY = ApiKeyNotFound("no API key '3f9a1c0e5b7d2468'; GET /v1/api-keys lists them",
                             {"key_id": "3f9a1c0e5b7d2468"})

API_KEY_CREATE_RESPONSES: dict[int | str, dict[str, Any]] = {
    201: _example("the key's record, and the key itself: shown this once",
                  examples.API_KEY_CREATED),
    422: _error("a key that cannot be made; `details.field` names what is wrong",
                InvalidApiKeySpec("scopes: unknown scope 'read'; the scopes are predict, jobs, "
                                  "train, admin", {"field": "scopes"})),
    409: _error("the API runs without INFERQ_AUTH_SECRET (authentication off)",
                ApiKeysUnavailable()),
    "4XX": _OTHER,
    503: _REDIS_503,
}

API_KEY_LIST_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _example("every key, oldest first; never a key itself", examples.API_KEY_LIST),
    "4XX": _OTHER,
    503: _REDIS_503,
}

API_KEY_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _example("the key's record (after a DELETE, with `revoked_at`)",
                  examples.API_KEY_REVOKED),
    404: _error("no such key", _NO_API_KEY),
    "4XX": _OTHER,
    503: _REDIS_503,
}

#: The name of the bearer scheme in the document's ``components.securitySchemes``.
BEARER = "apiKey"

_UNAUTHENTICATED = _error(
    "no API key, or one that is malformed, unknown, revoked or expired; "
    "`WWW-Authenticate: Bearer` says which",
    Unauthenticated("this request needs an API key: send it as 'Authorization: Bearer <key>'"),
    InvalidApiKey("the API key has been revoked", {"key_id": "3f9a1c0e5b7d2468"}))


_RATE_LIMITED = {
    **_error("over one of the key's rate limits (requests per second, rows per minute); "
             "`Retry-After` says in how many seconds the same request passes",
             RateLimited("this key is over its rate limit; retry in 2 s", 2,
                         {"retry_after": 2, "limits": {"requests": {"quota": 100, "window": 1},
                                                       "rows": {"quota": 600000,
                                                                "window": 60}}})),
    "headers": {"Retry-After": {"description": "seconds until the request passes",
                                "schema": {"type": "integer", "minimum": 1}}},
}


def secure_document(document: dict[str, Any],
                    route_scopes: dict[tuple[str, str], frozenset[str]]) -> None:
    """Declare the bearer scheme (the docs page's "Authorize") and, on every operation
    under /v1, that it needs a key, the scopes it takes, and its 401, 403 and 429."""
    components = document.setdefault("components", {})
    components.setdefault("securitySchemes", {})[BEARER] = {
        "type": "http", "scheme": "bearer", "bearerFormat": "inferq_<id>_<secret>",
        "description": "an API key: `inferq keys create` or POST /v1/api-keys makes one"}
    for path, operations in document.get("paths", {}).items():
        if not (path == "/v1" or path.startswith("/v1/")):
            continue
        for method, operation in operations.items():
            scopes = sorted(route_scopes.get((method.upper(), path), ()))
            operation["security"] = [{BEARER: []}]
            responses = operation.setdefault("responses", {})
            responses["401"] = _UNAUTHENTICATED
            responses["429"] = _RATE_LIMITED
            responses["403"] = _error(
                f"the key lacks the scope this route needs: {' or '.join(scopes)}",
                InsufficientScope(
                    f"this API key lacks the scope this request needs: {' or '.join(scopes)}",
                    {"required": scopes, "scopes": ["predict"]}))
