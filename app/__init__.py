"""netgrow's HTTP service (FastAPI) and command line; built on the job store (``worker.store``), never the runners."""
