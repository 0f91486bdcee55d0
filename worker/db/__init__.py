"""The service's database: models, engines and sessions, and programmatic migrations."""
from .models import (
    TERMINAL_STATUSES,
    ApiKey,
    Artifact,
    ArtifactKind,
    Base,
    EventKind,
    Job,
    JobEpoch,
    JobEvent,
    JobLayer,
    JobStatus,
    utcnow,
)
from .session import dispose_engines, get_engine, make_engine, normalize_url, session_factory, session_scope

__all__ = [
    "TERMINAL_STATUSES", "ApiKey", "Artifact", "ArtifactKind", "Base", "EventKind", "Job", "JobEpoch",
    "JobEvent", "JobLayer", "JobStatus", "dispose_engines", "get_engine", "make_engine", "normalize_url",
    "session_factory", "session_scope", "utcnow",
]
