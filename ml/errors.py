"""Errors of the model layer; the worker turns each into a failed task's readable error."""


class ModelError(Exception):
    """Base of every error the model layer raises on purpose."""

    #: The snake_case code a failed task's error carries, where a client can act on it.
    code: str | None = None


class ModelNotFoundError(ModelError):
    pass


class IntegrityError(ModelError):
    """An artifact's bytes do not match the sha256 recorded in its metadata."""


class ImportModelError(ModelError):
    """A file given to ``inferq models import`` is not a usable estimator."""


class NonFiniteValues(ModelError):
    """A model computed infinity or NaN from finite rows: its arithmetic overflowed."""

    code = "non_finite_values"
