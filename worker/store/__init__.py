"""The job store: everything the API and the runners agree on, and nothing that trains.

    settings    Settings from NETGROW_* variables (get_settings())
    models      the tables, JobStatus and TERMINAL_STATUSES
    session     engines, sessions, database_now()
    migrate     Alembic revisions applied from code
    jobs        the job state machine: create, cancel, retry, claim, lease, record, finish, reap, re-send
    keys        API keys
    artifacts   the artifact store's layout, safetensors weights, sha256
    datasets    a job's data.root, checked against the server's data_dir
    health      can the database and the broker be reached
    dispatch    enqueue(job_id): the Celery queue by task name, or the in-process runner
"""
