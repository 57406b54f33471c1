"""The answers of the API's plain JSON routes, as types: the OpenAPI document shows them,
and FastAPI checks each answer against its type."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.common.catalog import ModelMetadata


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Health(_Answer):
    status: Literal["ok", "ready"]


class ModelSummary(_Answer):
    name: str = Field(examples=["iris"])
    versions: list[int] = Field(description="every version, oldest first", examples=[[1, 2]])
    latest: int = Field(description="the newest version", examples=[2])
    default_version: int = Field(
        description="the version a prediction without a version or an alias uses: the "
        "alias `production`'s when the model has it, else the latest", examples=[1])
    aliases: dict[str, int] = Field(description="each alias and the version it points at",
                                    examples=[{"production": 1, "staging": 2}])
    task: Literal["classification", "regression"] | None = None


class ModelList(_Answer):
    models: list[ModelSummary]


class ModelVersion(ModelMetadata):
    """A version's metadata and the aliases that point at it."""

    aliases: list[str] = Field(default_factory=list,
                               description="the aliases pointing at this version")


class ModelDescription(ModelVersion):
    default_version: int = Field(
        description="the version a prediction without a version or an alias uses")


class ModelVersions(_Answer):
    model: str = Field(examples=["iris"])
    default_version: int = Field(
        description="the version a prediction without a version or an alias uses")
    aliases: dict[str, int] = Field(description="each alias and the version it points at")
    versions: list[ModelVersion] = Field(description="every version, oldest first")


class AliasSet(_Answer):
    model: str = Field(examples=["iris"])
    alias: str = Field(examples=["production"])
    version: int = Field(examples=[2])


class Pool(_Answer):
    name: str = Field(examples=["inference"])
    queue: str = Field(description="the Redis list its workers consume", examples=["inference"])
    waiting: int = Field(description="messages waiting in the queue")
    inflight: int = Field(description="tasks its workers hold, reserved or running")
    backlog: int = Field(description="waiting + inflight: what the autoscaler scales on")
    ready_replicas: int | None = Field(
        None, description="ready worker pods; null outside Kubernetes")
    desired_replicas: int | None = Field(
        None, description="worker pods the Deployment asks for; null outside Kubernetes")


class PoolList(_Answer):
    pools: list[Pool]


class BatchJobRequest(BaseModel):
    """The body of ``POST /v1/models/{model}/batch-jobs``."""

    model_config = ConfigDict(extra="forbid")

    dataset_id: str = Field(description="the dataset to score (POST /v1/datasets)",
                            min_length=1, max_length=200)
    version: int | None = Field(
        None, ge=1, description="a version; by default the alias `production`'s, else the "
        "latest")
    alias: str | None = Field(
        None, min_length=1, max_length=63,
        description="an alias of the model, in place of a version", examples=["staging"])
    id_column: str | None = Field(
        None, min_length=1, description="a dataset column copied to the output and the errors")
    passthrough_columns: list[str] = Field(
        default_factory=list, description="dataset columns copied to the output")
    output_format: Literal["csv", "jsonl", "parquet"] | None = Field(
        None, description="the output's format; the dataset's by default")
    return_probabilities: bool = Field(
        False, description="add one probability_<class> column per class (classifiers)")
    max_failed_rows: int = Field(
        0, ge=0, description="rows that may be rejected before the job fails")

    @model_validator(mode="after")
    def _version_or_alias(self) -> BatchJobRequest:
        if self.version is not None and self.alias is not None:
            raise ValueError(f"version {self.version} and alias {self.alias!r} both given; "
                             "give one of them")
        return self


class TrainingSearch(BaseModel):
    """A grid search: every combination of the grid's values is a candidate."""

    model_config = ConfigDict(extra="forbid")

    grid: dict[str, list[Any]] = Field(
        description="hyperparameter to the values to try", examples=[{"max_depth": [2, 4, 8]}])
    metric: str | None = Field(
        None, description="what picks the best candidate: accuracy, f1 or roc_auc for "
        "classifiers (accuracy by default), r2, mae or rmse for regressors (r2 by default)")


class PromoteIf(BaseModel):
    """The bar the new version's metric must clear for the alias to move to it."""

    model_config = ConfigDict(extra="forbid")

    metric: str = Field(description="one of the task's metrics", examples=["accuracy"])
    min: float | None = Field(None, description="the metric must be at least this")
    max: float | None = Field(
        None, description="the metric must be at most this (for mae and rmse, where lower "
        "is better)")


class TrainingJobRequest(BaseModel):
    """The body of ``POST /v1/models/{model}/training-jobs``."""

    model_config = ConfigDict(extra="forbid")

    dataset_id: str = Field(description="the dataset to train on (POST /v1/datasets)",
                            min_length=1, max_length=200)
    target_column: str = Field(min_length=1, description="the column to predict")
    feature_columns: list[str] | None = Field(
        None, description="the columns to learn from, in order; all others by default")
    estimator: str = Field(description="a scikit-learn estimator class of the allow-list",
                           examples=["RandomForestClassifier"])
    hyperparameters: dict[str, Any] = Field(
        default_factory=dict, description="the estimator's parameters",
        examples=[{"n_estimators": 100}])
    validation: dict[str, Any] | None = Field(
        None, description='{"holdout": fraction} (0.2 by default) or {"cv": folds} (2 to 20)',
        examples=[{"cv": 5}])
    search: TrainingSearch | None = None
    seed: int = Field(0, description="seeds the splits and the estimator")
    alias: str | None = Field(
        None, min_length=1, description="an alias to move to the new version",
        examples=["production"])
    promote_if: PromoteIf | None = Field(
        None, description="move the alias only when the new version clears this bar")


class DatasetColumn(_Answer):
    name: str = Field(examples=["sepal_length_cm"])
    dtype: str = Field(description="int64, float64, bool, string, null (only nulls), or for "
                       "Parquet the column's Arrow type", examples=["float64"])


class DatasetInfo(_Answer):
    dataset_id: str = Field(examples=["5d0c8f6e2b7a4c1f9e3d6a8b0c2e4f61"])
    name: str = Field(examples=["iris-2026-01"])
    format: Literal["csv", "jsonl", "parquet"]
    rows: int = Field(description="data rows (a CSV's header not counted)", examples=[150])
    columns: list[DatasetColumn]
    bytes: int = Field(description="the file's size", examples=[4551])
    sha256: str = Field(description="of the file as uploaded")
    created_at: str = Field(description="RFC 3339, UTC", examples=["2026-01-15T09:30:00.120Z"])


class DatasetList(_Answer):
    datasets: list[DatasetInfo] = Field(description="newest first")


class ApiKeyRequest(BaseModel):
    """A key to create; its id and the key itself are made by the API."""

    model_config = ConfigDict(extra="forbid")

    tenant: str = Field(description="the tenant the key acts for: lowercase letters, digits "
                        "and dashes, starting with a letter", examples=["acme"])
    scopes: list[str] = Field(min_length=1, description="any of predict, jobs, train, admin",
                              examples=[["predict"]])
    name: str = Field("", max_length=200, description="for people to know the key by",
                      examples=["acme's scoring service"])
    expires_at: str | None = Field(None, description="RFC 3339; none: never expires",
                                   examples=["2027-01-31T00:00:00Z"])
    expires_in_seconds: int | None = Field(None, gt=0, description="expires this long after "
                                           "its creation (instead of expires_at)")
    requests_per_second: float | None = Field(None, ge=0, description="the key's own request "
                                              "rate limit; none: the settings' default")
    rows_per_minute: int | None = Field(None, ge=0, description="the key's own row limit; "
                                        "none: the settings' default")

    @model_validator(mode="after")
    def _one_expiry(self) -> ApiKeyRequest:
        if self.expires_at is not None and self.expires_in_seconds is not None:
            raise ValueError("give expires_at or expires_in_seconds, not both")
        return self


class ApiKeyInfo(_Answer):
    id: str = Field(description="the key's public id, the part after inferq_",
                    examples=["3f9a1c0e5b7d2468"])
    tenant: str = Field(examples=["acme"])
    scopes: list[str] = Field(examples=[["predict"]])
    name: str = Field(examples=["acme's scoring service"])
    created_at: str | None = Field(None, description="RFC 3339, UTC")
    expires_at: str | None = Field(None, description="RFC 3339, UTC; null: never")
    revoked_at: str | None = Field(None, description="RFC 3339, UTC; null: not revoked")
    last_used_at: str | None = Field(None, description="RFC 3339, UTC, to within a minute")
    requests_per_second: float | None = None
    rows_per_minute: int | None = None


class ApiKeyCreated(ApiKeyInfo):
    key: str = Field(description="the key itself: shown this once, never again",
                     examples=["inferq_3f9a1c0e5b7d2468_" + "x" * 43])


class ApiKeyList(_Answer):
    api_keys: list[ApiKeyInfo] = Field(description="oldest first")
