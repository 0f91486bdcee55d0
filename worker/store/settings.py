"""Service settings, read once from ``NETGROW_*`` environment variables.

The same object configures the API, the Celery workers and the embedded
runner, so every process agrees on where the database, the broker and the
artifacts are and on how long a job's lease lasts.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NETGROW_", extra="ignore")

    artifact_dir: Path = Field(default=Path("./netgrow-data/artifacts"),
                               description="checkpoints and final weights; shared by the API and every worker")
    data_dir: Path = Field(default=Path("./netgrow-data/datasets"),
                           description="folder holding the on-disk datasets; a job's data.root is a folder inside "
                                       "it; shared by the API (which checks it) and every worker (which reads it)")
    database_url: str = Field(default="", description="SQLAlchemy URL; empty means a SQLite file next to artifact_dir")
    broker_url: str | None = Field(default=None, description="Redis URL for Celery; unset means embedded mode")
    queue: str = Field(default="netgrow", description="the Celery queue that carries job ids")

    lease_seconds: float = Field(default=60.0, gt=0, description="a job whose worker is silent this long is re-queued")
    heartbeat_seconds: float = Field(default=0.0, ge=0, description="lease renewal interval; 0 means lease_seconds / 3")
    reaper_seconds: float = Field(default=0.0, ge=0,
                                  description="reaper scan interval (expired leases, queued jobs to re-send); "
                                              "0 means lease_seconds / 2")
    # Redis may lose queued job ids (a restart without persistence, a failover, a flush); the database still
    # has the jobs. A job that waits behind busy workers also gets sent again once per period: each such
    # duplicate costs a worker one failed claim (a no-op), so this trades recovery time against queue noise.
    requeue_after_seconds: float = Field(
        default=0.0, ge=0,
        description="a job still queued this long after its id was last sent is sent again (the broker may "
                    "have lost the message); 0 means 5 * lease_seconds")
    max_attempts: int = Field(default=3, ge=1, description="runs of a job before it is marked failed")
    # A worker cut off from PostgreSQL keeps trying its write (an epoch, the finish) this long before it
    # abandons the attempt; a write that lands after the lease ran out is refused by the lease check.
    # The claim of a new job waits for the database without limit: the message stays in the queue meanwhile.
    database_wait_seconds: float = Field(default=600.0, gt=0,
                                         description="how long a running job's worker retries a write while "
                                                     "the database is unreachable")
    # Redis re-delivers a message still unacknowledged after this long (celery#5935), and with acks_late
    # a message stays unacknowledged while its job trains. The database claim turns a re-delivery into a
    # no-op, so this only keeps such no-ops rare; it never decides whether a job runs. Values below the
    # longest job only make idle workers pick up (and skip) running jobs' ids; tests use 1 s to see it.
    visibility_timeout_seconds: int = Field(default=12 * 3600, ge=1)
    # kombu's idle-worker sweep for such messages: every unacked_restore_interval × unacked_restore_throttle
    # seconds (10 × 10 by kombu's defaults); this sets the interval with a throttle of 1.
    redelivery_scan_seconds: int = Field(default=100, ge=1,
                                         description="how often an idle worker looks for messages past the "
                                                     "visibility timeout")

    max_epochs: int = Field(default=1000, ge=1)
    max_width: int = Field(default=4096, ge=1)
    max_params: int = Field(default=50_000_000, ge=1)
    # Counting parameters builds the model on the meta device, about 3 ms per layer: the bound keeps
    # a 1 MB body of `[1, 1, 1, ...]` from costing minutes of CPU. ResNet-110 has 109 conv layers.
    max_layers: int = Field(default=2000, ge=1, description="layer widths a model spec may list")
    max_dataset_bytes: int = Field(default=4 << 30, ge=1,
                                   description="float32 image bytes a job's data spec may load into memory")
    max_request_bytes: int = Field(default=1_000_000, ge=1)
    # POST /v1/datasets streams its body to disk and is bounded by these instead of max_request_bytes.
    max_upload_bytes: int = Field(default=512 << 20, ge=1, description="bytes of one uploaded dataset file")
    max_upload_unpacked_bytes: int = Field(default=2 << 30, ge=1,
                                           description="bytes an uploaded npz or archive may expand to")
    max_upload_files: int = Field(default=200_000, ge=1, description="files and folders in an uploaded archive")
    api_page_size_max: int = Field(default=200, ge=1)
    # Per-owner limits (each API key's owner); a submission beyond one is answered 429.
    max_active_jobs_per_owner: int = Field(default=50, ge=1, description="queued + running jobs per owner")
    max_submissions_per_minute: int = Field(default=60, ge=1, description="new jobs per owner per minute")
    max_artifact_bytes_per_owner: int = Field(default=50 << 30, ge=1,
                                              description="checkpoint and weights bytes stored per owner")
    metrics_token: str | None = Field(default=None, description="when set, GET /metrics needs "
                                                                "'Authorization: Bearer <token>'")

    @model_validator(mode="after")
    def _fill_derived(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.artifact_dir.parent / 'netgrow.db').resolve()}"
        if not self.heartbeat_seconds:
            self.heartbeat_seconds = self.lease_seconds / 3
        if not self.reaper_seconds:
            self.reaper_seconds = self.lease_seconds / 2
        if not self.requeue_after_seconds:
            self.requeue_after_seconds = 5 * self.lease_seconds
        if self.heartbeat_seconds >= self.lease_seconds:
            raise ValueError("heartbeat_seconds must be shorter than lease_seconds, or the lease lapses between beats")
        if self.broker_url == "":
            self.broker_url = None
        return self

    @property
    def embedded(self) -> bool:
        """True when jobs run in a thread of this process instead of on Celery workers."""
        return self.broker_url is None


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings; tests call ``get_settings.cache_clear()`` after changing the environment."""
    return Settings()
