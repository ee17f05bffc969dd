"""The subscriber web pages (FastAPI): subscribe with double opt-in, confirm, one-click unsubscribe
(RFC 8058), feedback and preferences. ``create_app(settings)`` builds the application."""

from digest.web.app import create_app

__all__ = ["create_app"]
