"""What runs jobs; built on ``worker.store``, never imported by it or by ``app/``.

    attempt      run_job(): claim, heartbeat, train with growth.run, record every epoch, finish
    celery_app   the Celery app (celery -A worker.runners.celery_app worker --pool=solo)
    tasks        the one Celery task, netgrow.run_job
    embedded     the in-process runner of a broker-less deployment
    reaper       re-queues jobs whose worker died, re-sends ids the broker may have lost
"""
