"""Error bodies: spec errors as FastAPI's 422, and the app's exception handlers.

A spec error names a dotted field (``model.layers[2]``); clients get the same
``{"detail": [{"loc": ["body", "model", "layers", 2], "msg", "type"}]}`` shape
that FastAPI uses for its own validation errors, so one error handler serves both.
"""
from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from growth.errors import SpecError

log = logging.getLogger(__name__)

_PART = re.compile(r"\[(\d+)\]|([^.\[\]]+)")


def field_loc(field: str) -> list[str | int]:
    """``"model.layers[2]"`` → ``["model", "layers", 2]``; ``"spec"`` (the whole document) → ``[]``."""
    if field == "spec":
        return []
    return [int(index) if index else name for index, name in _PART.findall(field)]


def validation_error(loc: list[str | int], message: str, kind: str) -> RequestValidationError:
    return RequestValidationError([{"loc": tuple(loc), "msg": message, "type": kind}])


def spec_validation_error(exc: SpecError, kind: str = "spec_error") -> RequestValidationError:
    return validation_error(["body", *field_loc(exc.field)], exc.message, kind)


# --- handlers -------------------------------------------------------------------------------


# How long a client should wait before asking again while the database is unreachable: long enough
# for a restart or a failover, short enough that nobody waits long after it is back.
DATABASE_RETRY_AFTER_SECONDS = 5


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    # OperationalError: the server is unreachable or went away (connection refused, reset, timed out);
    # InterfaceError: the driver's connection broke. Neither is the request's fault.
    app.add_exception_handler(OperationalError, _database_unavailable)
    app.add_exception_handler(InterfaceError, _database_unavailable)


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """503 with a reason and Retry-After, as a normal response: the connection stays open for the retry."""
    log.warning("%s %s: the database is unreachable (%s)", request.method, request.url.path,
                type(getattr(exc, "orig", exc)).__name__)
    return JSONResponse({"detail": "the database is unreachable; nothing was changed, try again shortly"},
                        status_code=503, headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)})


def _allowed_methods(app: FastAPI, path: str) -> list[str]:
    """The methods the OpenAPI document lists for ``path`` (all routes that match it, not just the first)."""
    if not hasattr(app.state, "path_methods"):
        app.state.path_methods = [
            (re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$"),
             [method.upper() for method in operations])
            for template, operations in app.openapi()["paths"].items()]
    return sorted({method for pattern, methods in app.state.path_methods if pattern.match(path) for method in methods})


async def _http_error(request: Request, exc: Exception) -> Response:
    # Starlette's 405 names the methods of the first route matching the path only; /v1/jobs has two.
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 405:
        allow = ", ".join(_allowed_methods(request.app, request.url.path))
        exc = StarletteHTTPException(405, exc.detail, headers={**(exc.headers or {}), "Allow": allow})
    return await http_exception_handler(request, exc)


def _is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    # FastAPI's own handler also echoes each invalid input back, which for a large
    # spec means the whole body; `loc`, `msg` and `type` say everything needed.
    assert isinstance(exc, RequestValidationError)
    content_type = request.headers.get("content-type", "")
    # An upload (POST /v1/datasets) is multipart by design: its body errors are about the file's content.
    uploaded = content_type.split(";", 1)[0].strip().lower() == "multipart/form-data"
    if any(error["loc"][:1] == ("body",) for error in exc.errors()) and not (_is_json(content_type) or uploaded):
        # FastAPI reads a body of another media type as no JSON at all, and says only that
        # the body is not an object: name the header that caused it.
        sent = f"got {content_type!r}" if content_type else "none was sent"
        return JSONResponse({"detail": f"Content-Type must be application/json ({sent}): the body is a JSON "
                                       "document"}, status_code=415)
    detail = [{"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]} for error in exc.errors()]
    return JSONResponse({"detail": detail}, status_code=422)
