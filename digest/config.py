"""Settings, read from the environment (prefix ``DIGEST_``) and an optional ``.env`` file."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from digest import __version__


class Settings(BaseSettings):
    """Every knob of papers-digest. Secrets are ``SecretStr`` so they never show in logs or reprs."""

    model_config = SettingsConfigDict(env_prefix="DIGEST_", env_file=".env", extra="ignore")

    # Store
    database_url: str = "sqlite:///./digest.db"

    # Listing source (Hugging Face Daily Papers)
    hf_base_url: str = "https://huggingface.co"
    hf_primary: Literal["api", "page"] = Field(
        "api", description="Which path is tried first; the other is the fallback."
    )
    http_connect_timeout: float = 10.0
    http_read_timeout: float = 30.0
    http_max_attempts: int = 5
    http_total_timeout: float = 120.0
    http_backoff_initial: float = 1.0
    http_backoff_max: float = 30.0
    user_agent: str = (
        f"papers-digest/{__version__} (+https://github.com/papers-digest/papers-digest)"
    )

    # Embeddings and ranking (issue: ranking)
    model_name: str = "all-MiniLM-L6-v2"
    embed_batch_size: int = 64

    # Mail (issue: email)
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    mail_from: str = "Papers Digest <digest@localhost>"
    outbox_dir: str = "./outbox"

    # Web (issue: web pages)
    public_url: str = "http://127.0.0.1:8000"
    secret_key: SecretStr | None = None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (tests build their own ``Settings`` instead)."""
    return Settings()
