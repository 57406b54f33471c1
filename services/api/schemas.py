"""The answers of the API's plain JSON routes, as types: the OpenAPI document shows them,
and FastAPI checks each answer against its type."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Health(_Answer):
    status: Literal["ok", "ready"]


class ModelSummary(_Answer):
    name: str = Field(examples=["iris"])
    versions: list[int] = Field(description="every version, oldest first", examples=[[1, 2]])
    latest: int = Field(description="the version a prediction without one uses", examples=[2])
    task: Literal["classification", "regression"] | None = None


class ModelList(_Answer):
    models: list[ModelSummary]


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
    version: int | None = Field(None, ge=1, description="a version; the latest by default")
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
