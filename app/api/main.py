"""The API's routers: one per resource; everything under /v1 needs an API key."""
from __future__ import annotations

from fastapi import APIRouter, Depends

from app.api.deps import get_current_owner, reject_unknown_query_parameters
from app.api.routes import compare, datasets, health, jobs, plots
from app.schemas import ErrorBody

UNAUTHORIZED = {401: {"model": ErrorBody, "description": "Missing, invalid or revoked API key."}}

v1_router = APIRouter(prefix="/v1", responses=UNAUTHORIZED,
                      dependencies=[Depends(get_current_owner), Depends(reject_unknown_query_parameters)])
v1_router.include_router(jobs.router)
v1_router.include_router(compare.router)
v1_router.include_router(plots.router)
v1_router.include_router(datasets.router)

api_router = APIRouter()
api_router.include_router(v1_router)
api_router.include_router(health.router, dependencies=[Depends(reject_unknown_query_parameters)])
