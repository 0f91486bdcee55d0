"""netgrow's job service core: settings, database, job lifecycle, Celery worker and embedded runner.

    worker.settings     Settings from NETGROW_* variables (get_settings())
    worker.db           models, engines/sessions, programmatic Alembic migrations
    worker.keys         API keys (create_key, authenticate, revoke_key)
    worker.crud         write-side job data access (create_job, request_cancel, claim, record, reap)
    worker.jobs         run_job(): the one code path that runs a job
    worker.queue        enqueue(job_id): Celery or the embedded runner
    worker.celery_app   the Celery app (celery -A worker.celery_app worker --pool=solo)
    worker.embedded     in-process runner for a broker-less deployment
    worker.reaper       re-queues jobs whose worker died
    worker.artifacts    artifact-store layout, safetensors weights, sha256
"""
