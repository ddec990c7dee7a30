"""`sepgan serve`: a web page to try the model and an HTTP API to use it (FastAPI + uvicorn).

The app is `sepgan.serve.app.create_app`; the command is `sepgan.serve.cli`.
"""
