"""netgrow's HTTP service (FastAPI) and command line."""
