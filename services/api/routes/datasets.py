"""Datasets: uploading a file, listing, reading and deleting them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from services.api.dataset_upload import receive_dataset, remove_dataset
from services.api.deps import StateDep
from services.api.errors import DatasetNotFound
from services.api.openapi import (
    DATASET_LIST_RESPONSES,
    DATASET_RESPONSES,
    DATASET_UPLOAD_BODY,
    DELETE_DATASET_RESPONSES,
    UPLOAD_RESPONSES,
)
from services.api.principal import principal_of
from services.api.schemas import DatasetInfo, DatasetList
from services.common.datasets import get_dataset, list_datasets

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

DatasetName = Annotated[str, Query(
    min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$",
    description="a name for people to know the dataset by (need not be unique)")]


def _not_found(dataset_id: str) -> DatasetNotFound:
    return DatasetNotFound(f"no dataset {dataset_id!r}; GET /v1/datasets lists them",
                           {"dataset_id": dataset_id})


@router.post(
    "",
    summary="Upload a dataset",
    status_code=201,
    response_model=DatasetInfo,
    responses=UPLOAD_RESPONSES,
    openapi_extra={"requestBody": DATASET_UPLOAD_BODY},
)
async def upload_dataset(request: Request, response: Response, state: StateDep,
                         name: DatasetName) -> dict[str, Any]:
    """Store the body, a CSV, JSON Lines or Parquet file named by `Content-Type`, as a
    dataset. It is streamed to storage and checked on the way: a file that is not what its
    type says is a 400 naming the line or row, and nothing of it is kept."""
    dataset = await receive_dataset(request, state, name)
    response.headers["Location"] = f"/v1/datasets/{dataset.dataset_id}"
    return dataset.to_public()


@router.get("", summary="List the datasets", response_model=DatasetList,
            responses=DATASET_LIST_RESPONSES)
async def get_datasets(
    request: Request, state: StateDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="at most this many")] = 100,
) -> dict[str, Any]:
    """The caller's datasets, newest first."""
    found = await list_datasets(state.redis, limit, principal_of(request).tenant)
    return {"datasets": [d.to_public() for d in found]}


@router.get("/{dataset_id}", summary="Describe a dataset", response_model=DatasetInfo,
            responses=DATASET_RESPONSES)
async def get_one_dataset(request: Request, state: StateDep,
                          dataset_id: str) -> dict[str, Any]:
    """The dataset: its format, rows, columns with their dtypes, size and sha256."""
    dataset = await get_dataset(state.redis, dataset_id, principal_of(request).tenant)
    if dataset is None:
        raise _not_found(dataset_id)
    return dataset.to_public()


@router.delete("/{dataset_id}", summary="Delete a dataset", status_code=204,
               response_class=Response, responses=DELETE_DATASET_RESPONSES)
async def delete_one_dataset(request: Request, state: StateDep, dataset_id: str) -> Response:
    """Delete the dataset and its file."""
    if not await remove_dataset(state, dataset_id, principal_of(request).tenant):
        raise _not_found(dataset_id)
    return Response(status_code=204)
