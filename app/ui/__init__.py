"""The dashboard at ``/ui``: plain static files (HTML, CSS, ES modules) served by the API itself.

No build step, no CDN, nothing fetched from elsewhere: the page works offline
and its Content-Security-Policy allows only this origin (and ``blob:`` images,
the plots it fetches with the API key). The page keeps the key in session
storage and sends it as an ``Authorization`` header; it reads job events with
``fetch`` streaming, because ``EventSource`` cannot send that header (see
docs/dashboard.md). ``/ui/meta.json`` tells the page the job statuses, the
methods and the example specs; it holds nothing of any user, so it needs no key.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"  # the repository's examples/, when present

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
        "connect-src 'self' blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidate every time: an upgraded server must not meet a cached page of the previous version.
    "Cache-Control": "no-cache",
}


class DashboardFiles(StaticFiles):
    """StaticFiles with the dashboard's security headers on every file it serves."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        return response


def load_examples(folder: Path = EXAMPLES_DIR) -> dict[str, Any]:
    """``{name: spec}`` for every readable ``*.json`` in ``folder`` (none when it is absent)."""
    examples: dict[str, Any] = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        try:
            examples[path.stem] = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            log.warning("example spec %s is not readable JSON: %s", path, exc)
    return examples


def dashboard_meta() -> dict[str, Any]:
    from growth.spec import METHODS
    from worker.store.models import JobStatus

    return {"statuses": [status.value for status in JobStatus], "methods": list(METHODS), "examples": load_examples()}


router = APIRouter(include_in_schema=False)


@router.get("/ui")
def dashboard_root() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=308)


@router.get("/ui/meta.json")
def read_meta(request: Request) -> JSONResponse:
    return JSONResponse(request.app.state.dashboard_meta, headers=SECURITY_HEADERS)


def install_dashboard(app: FastAPI) -> None:
    """Serve the dashboard at /ui (the routes before the mount, which would otherwise take /ui/meta.json)."""
    app.state.dashboard_meta = dashboard_meta()
    app.include_router(router)
    app.mount("/ui", DashboardFiles(directory=STATIC_DIR, html=True), name="ui")
