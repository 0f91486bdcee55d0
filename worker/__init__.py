"""netgrow's service core, in two halves; ``app/`` imports the store and never the runners.

    worker.store      the job store: settings, database, the job state machine, keys,
                      artifacts, dataset roots, health checks, dispatch to the runners
    worker.runners    what runs jobs: the Celery app and task, the embedded runner,
                      the reaper, and the attempt loop that trains one job

The runners import the store; the store names the runners only by string (a Celery
task name, the embedded runner's import path), see ``worker.store.dispatch``.
"""
