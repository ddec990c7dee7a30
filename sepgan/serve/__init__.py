"""`sepgan serve`: a web page to try the model and an HTTP API to use it (FastAPI + uvicorn).

The app is `sepgan.serve.app.create_app` (routes) over `sepgan.serve.service.Service` (state and work); the command is `sepgan.commands.serve`.
"""
