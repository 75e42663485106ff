"""The REST API and web page (`lungxray serve`): `create_app(predictor)` builds the FastAPI app, `serve(...)`
loads the model once and runs it under uvicorn."""

from __future__ import annotations

from .app import create_app
from .run import serve

__all__ = ["create_app", "serve"]
