"""Typed dependencies, so that route signatures read like their contract.

    def read_job(job: OwnedJob, settings: SettingsDep) -> JobRead

``CurrentOwner`` authenticates the bearer key (401 otherwise); ``OwnedJob``
loads a job of that owner (404 for a missing job and for another owner's job
alike, so ids of other users' jobs cannot be probed).
"""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request, status
from fastapi.dependencies.models import Dependant
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from app import queries
from app.api.errors import validation_error
from worker.store import keys
from worker.store.models import Job
from worker.store.settings import Settings


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_session_factory(request: Request) -> sessionmaker[Session]:
    return request.app.state.sessions


SessionFactoryDep = Annotated[sessionmaker[Session], Depends(get_session_factory)]


def get_db(sessions: SessionFactoryDep) -> Iterator[Session]:
    with sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_db)]

bearer_scheme = HTTPBearer(
    auto_error=False, scheme_name="ApiKey",
    description="An API key from `netgrow keys create NAME`, sent as `Authorization: Bearer <key>`.")


def get_current_owner(
    sessions: SessionFactoryDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> str:
    if credentials is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing API key: send 'Authorization: Bearer <key>'",
                            headers={"WWW-Authenticate": 'Bearer realm="netgrow"'})
    # A session of its own, closed at once: the request's SessionDep lives until the response
    # is sent, which for an event stream is minutes, and must not pin a pooled connection.
    with sessions() as session:
        owner = keys.authenticate(session, credentials.credentials)
    if owner is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid or revoked API key",
                            headers={"WWW-Authenticate": 'Bearer realm="netgrow", error="invalid_token"'})
    return owner


CurrentOwner = Annotated[str, Depends(get_current_owner)]

JobId = Annotated[uuid.UUID, Path(description="The job's id (a UUID).")]


def get_owned_job(job_id: JobId, owner: CurrentOwner, session: SessionDep) -> Job:
    job = queries.get_job(session, job_id, owner)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id}")
    return job


OwnedJob = Annotated[Job, Depends(get_owned_job)]


def reject_unknown_query_parameters(request: Request) -> None:
    """422 for a query parameter the endpoint does not take: `?staus=failed` must not list every job."""
    dependant = getattr(request.scope.get("route"), "dependant", None)
    if dependant is None:
        return
    allowed = _query_names(dependant)
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        takes = ", ".join(sorted(allowed)) or "none"
        raise validation_error(["query", unknown[0]], f"unknown query parameter; this endpoint takes: {takes}",
                               "extra_forbidden")


def _query_names(dependant: Dependant) -> set[str]:
    names = {field.alias for field in dependant.query_params}
    for child in dependant.dependencies:
        names |= _query_names(child)
    return names
