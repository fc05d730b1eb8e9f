"""The FastAPI service: `create_app(settings)`."""

from stepscope.api.app import create_app

__all__ = ["create_app"]
