"""The HTTP API (FastAPI): `create_app(settings)`; `server.serve(settings)` runs it under uvicorn."""

from api.app import ApiConfig, create_app

__all__ = ["ApiConfig", "create_app"]
