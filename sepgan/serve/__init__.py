"""`sepgan serve`: a web page to try the model and an HTTP API to use it (FastAPI + uvicorn)."""

from sepgan.serve.app import Settings, create_app

__all__ = ["Settings", "create_app"]
