"""Settings, read from the environment (prefix ``DIGEST_``) and an optional ``.env`` file."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def package_version() -> str:
    """The installed version of papers-digest (its metadata), ``0+unknown`` in a bare source tree."""
    try:
        return version("papers-digest")
    except PackageNotFoundError:
        return "0+unknown"


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
        f"papers-digest/{package_version()} (+https://github.com/papers-digest/papers-digest)"
    )
    http_max_response_bytes: int = Field(
        64 * 1024 * 1024, ge=1024,
        description="A listing answer larger than this is refused unread (a real day is ~0.2 MB).",
    )

    # Embeddings and ranking (issue: ranking)
    model_name: str = "all-MiniLM-L6-v2"
    embed_batch_size: int = 64
    embed_bf16: bool = Field(False, description="Encode under torch bf16 autocast on CPU (about 2x faster).")
    # Ranking knobs (digest/rank.py); defaults justified by bench/ranking_quality.py.
    rank_relevance_weight: float = 1.0
    rank_trending_weight: float = Field(0.1, description="Weight of log1p(upvotes), normalised in the window.")
    rank_age_weight: float = Field(0.02, description="Weight of freshness (1 today, 0 at the window's age).")
    rank_negative_weight: float = Field(1.0, description="How hard a negative interest pushes a paper down.")
    rank_min_relevance: float = Field(0.25, description="Papers below this relevance are never picked.")
    rank_min_picks: int = Field(
        3, ge=0,
        description="A subscriber with interests whose digest has fewer papers above rank_min_relevance is "
        "topped up to this many (at most max_papers) with the most upvoted allowed papers, reason "
        "'trending'. 0 disables.",
    )
    rank_negative_floor: float = Field(0.25, description="Similarity to a negative interest below this is ignored.")
    rank_mmr_lambda: float = Field(0.85, description="1 = pure score, lower = more diverse picks.")
    rank_window_days: int = Field(7, ge=1, description="Longest window after a missed digest, in days.")

    # Mail (issue: email)
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    mail_from: str = "Papers Digest <digest@localhost>"
    outbox_dir: str = "./outbox"
    smtp_security: Literal["starttls", "tls", "none"] = Field(
        "starttls", description="starttls (port 587), tls (implicit TLS, port 465) or none (loopback/tests)."
    )
    smtp_timeout: float = 30.0
    smtp_connections: int = Field(1, ge=1, description="Parallel SMTP connections used by the sender.")
    list_id: str = "Papers Digest <digest.localhost>"
    unsubscribe_mailto: str = "unsubscribe@localhost"

    # Schedule (flows/, deploy/)
    timezone: str = Field("UTC", description="Timezone of the schedule and of 'today'.")
    schedule_cron: str = Field("0 7 * * *", description="When the daily digest runs (cron, in `timezone`).")
    backfill_min_interval: float = Field(
        3.0, ge=0, description="Seconds between listing requests in a backfill (HF: ~100 per 5 minutes)."
    )
    refetch_max_days: int = Field(
        4, ge=0, le=14,
        description="The daily run fetches again the days before its digest day, back to the last day that "
        "had a listing (late additions), at most this many days (4 covers a long weekend); 0: never.",
    )
    flow_send_batch: int = Field(2000, ge=1, description="Deliveries per Prefect send task.")
    lag_days: int = Field(
        1, ge=0, le=7,
        description="The scheduled run mails the digest of listing day today - lag_days in `timezone` "
        "(1: yesterday, the last complete day: HF fills a day's list during that day and its upvotes "
        "settle later). `digest run --date D` always means listing day D.",
    )
    schedule_interval_seconds: int | None = Field(
        None, ge=10,
        description="Run the daily deployment every N seconds instead of on `schedule_cron` (trials, tests).",
    )

    # Outbox and sending
    message_id_domain: str = "papers-digest.localhost"
    send_batch_size: int = Field(20, ge=1, description="Deliveries claimed at once by one sender.")
    send_lease_seconds: float = Field(
        300, ge=0, description="A row left 'sending' this long belongs to a dead sender and is re-sent."
    )
    send_retry_initial: float = 2.0
    send_retry_max: float = 300.0
    send_deadline_seconds: float = Field(1800, description="How long one run keeps retrying 4xx replies.")
    send_max_consecutive_errors: int = Field(10, ge=1)

    # Web (issue: web pages)
    public_url: str = "http://127.0.0.1:8000"
    secret_key: SecretStr | None = None
    web_confirm_retry_seconds: float = Field(
        60, gt=0, description="How often the web process retries confirmation mails left in the outbox."
    )
    demo_secret_fallback: bool = Field(
        False,
        description="Only for demos: sign links with a fixed, public key when secret_key is unset. "
        "Never enable in production (anyone could forge unsubscribe/feedback links).",
    )


_override: Settings | None = None
_override_lock = threading.RLock()


def get_settings() -> Settings:
    """The one settings accessor of the CLI and the flows: the settings given to ``use_settings`` when
    one is active, else the environment and ``.env`` read afresh (cheap: a few fields)."""
    return _override if _override is not None else Settings()


@contextmanager
def use_settings(settings: Settings) -> Iterator[Settings]:
    """Run a block (e.g. a flow called in this process) with ``settings`` instead of the environment:
    how the demo and tests pass their configuration explicitly. Process-wide, one at a time."""
    global _override
    with _override_lock:
        previous, _override = _override, settings
        try:
            yield settings
        finally:
            _override = previous
