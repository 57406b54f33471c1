"""The API's errors: each class maps to one HTTP status and one error code, here only."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def headers(self) -> dict[str, str]:
        return {}


class InputError(ApiError):
    """A request refused for its input; counted in ``inferq_input_rejected_total``."""

    status = 400


class MalformedBody(InputError):
    code = "malformed_body"


class InvalidParameter(InputError):
    code = "invalid_parameter"


def wait_out_of_range(raw: str, max_wait: float) -> InvalidParameter:
    """A ``wait`` outside 0 to ``max_wait`` seconds (INFERQ_MAX_WAIT_SECONDS)."""
    return InvalidParameter(f"wait must be between 0 and {max_wait:g} seconds",
                            {"parameter": "wait", "value": raw})


class PayloadTooLarge(InputError):
    status = 413
    code = "payload_too_large"


class TooManyRows(InputError):
    status = 413
    code = "too_many_rows"


class InvalidRows(InputError):
    status = 422
    code = "invalid_rows"


class InvalidDataset(InputError):
    """An uploaded file that is not a readable dataset of its type; details name the line
    or row."""

    code = "invalid_dataset"


class UnsupportedMediaType(InputError):
    status = 415
    code = "unsupported_media_type"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class VersionNotFound(NotFound):
    code = "version_not_found"


class AliasNotFound(NotFound):
    code = "alias_not_found"


class TaskNotFound(NotFound):
    code = "task_not_found"


class DatasetNotFound(NotFound):
    code = "dataset_not_found"


class JobNotFound(NotFound):
    code = "job_not_found"


class UnfitColumns(InputError):
    """A batch job whose dataset lacks a column it needs, or names a column wrongly."""

    status = 422
    code = "unfit_columns"


class InvalidTrainingSpec(InputError):
    """A training job the platform cannot run: an unknown estimator, hyperparameter or
    column, a value of the wrong type, a target that does not fit the task; ``details``
    name the field."""

    status = 422
    code = "invalid_training_spec"


class InvalidAlias(InputError):
    """An alias that cannot be set: a bad name, or a body without a version."""

    status = 422
    code = "invalid_alias"


class Unauthenticated(ApiError):
    """A request under /v1 without a usable API key (RFC 6750): no key at all is
    ``missing_credentials``; one that is malformed, unknown, revoked or expired is
    ``invalid_api_key``, and its challenge says ``invalid_token``."""

    status = 401
    code = "missing_credentials"

    def headers(self) -> dict[str, str]:
        if self.code == "missing_credentials":
            return {"WWW-Authenticate": 'Bearer realm="inferq"'}
        return {"WWW-Authenticate": 'Bearer realm="inferq", error="invalid_token"'}


class InvalidApiKey(Unauthenticated):
    code = "invalid_api_key"


class InsufficientScope(ApiError):
    """A key without the scope the route needs; ``details["required"]`` lists the scopes
    any of which would do."""

    status = 403
    code = "insufficient_scope"

    def headers(self) -> dict[str, str]:
        scope = " ".join(self.details.get("required", ()))
        return {"WWW-Authenticate":
                f'Bearer realm="inferq", error="insufficient_scope", scope="{scope}"'}


class ApiKeyNotFound(NotFound):
    code = "api_key_not_found"


class InvalidApiKeySpec(InputError):
    """A key that cannot be created: an unknown scope, a bad tenant, an expiry in the past,
    a negative limit; ``details["field"]`` names it."""

    status = 422
    code = "invalid_api_key_spec"


class ApiKeysUnavailable(ApiError):
    """A key to create on an API without ``INFERQ_AUTH_SECRET`` (authentication off): a
    conflict with its configuration, not a failure of the server."""

    status = 409
    code = "api_keys_unavailable"

    def __init__(self) -> None:
        super().__init__("this API runs without INFERQ_AUTH_SECRET (authentication is off): "
                         "it cannot store keys; set INFERQ_AUTH=on and INFERQ_AUTH_SECRET")


class MethodNotAllowed(ApiError):
    """``details["allowed"]``: the methods the path takes, answered in ``Allow``."""

    status = 405
    code = "method_not_allowed"

    def headers(self) -> dict[str, str]:
        return {"Allow": ", ".join(self.details.get("allowed", ()))}


class SharedModel(ApiError):
    """A tenant asked to change a shared model (its aliases, or a version of it): only the
    operator does (``docs/security.md``, Tenants)."""

    status = 403
    code = "shared_model"


class TaskNotCancellable(ApiError):
    status = 409
    code = "task_not_cancellable"


class JobNotCancellable(ApiError):
    status = 409
    code = "job_not_cancellable"


class JobNotSucceeded(ApiError):
    """Results asked of a job that has none (yet)."""

    status = 409
    code = "job_not_succeeded"


class RedisUnavailable(ApiError):
    status = 503
    code = "redis_unavailable"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}


class RedisFull(RedisUnavailable):
    code = "redis_full"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "5"}


class StorageUnavailable(ApiError):
    status = 503
    code = "storage_unavailable"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "5"}


def error_body(error: ApiError) -> dict[str, Any]:
    return {"error": {"code": error.code, "message": error.message, "details": error.details}}
