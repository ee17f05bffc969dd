"""Settings, read from the environment (prefix ``DIGEST_``) and an optional ``.env`` file."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from ipaddress import ip_network
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


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
    embed_bf16: bool = Field(
        False,
        description="Encode under torch bf16 autocast on CPU: faster only where the CPU has bf16 instructions "
        "(AVX512-BF16, AMX); without them it is emulated and slower (bench/embed_speed.py: 0.30x fp32 on a Xeon "
        "with AVX-512 but no BF16). Vectors are cached per precision: switching re-encodes the papers and "
        "interests it needs, never mixing the two. On the fixtures bf16 gives the same top-10, in the same "
        "order, for all 40 labelled phrases.",
    )
    embed_interests_on_write: bool = Field(
        True,
        description="Compute interest vectors where interests are written (subscribers add / edit / import, "
        "the preferences page and a confirmed sign-up), so a day's plan finds them cached. Off: the next "
        "plan computes what is missing (the web process then never loads the model).",
    )
    # Ranking knobs (digest/rank.py); defaults justified by bench/ranking_quality.py.
    rank_relevance_weight: float = 1.0
    rank_trending_weight: float = Field(
        0.05, description="Weight of log1p(upvotes), normalised in the window. bench/ranking_quality.py: 0.05 costs "
        "~0.5 point of top-1 relevance, 0.1 ~3.6, 0.2 ~12.6 (upvotes independent of relevance).",
    )
    rank_age_weight: float = Field(0.02, description="Weight of freshness (1 today, 0 at the window's age).")
    rank_negative_weight: float = Field(1.0, description="How hard a negative interest pushes a paper down.")
    rank_min_relevance: float = Field(
        0.65, description="Papers below this relevance are never picked (except by the top-up). Calibrated on the "
        "labelled phrases for the hybrid with rank_lexical_weight 1.0 (bench/ranking_quality.py, sections 4 and 8).",
    )
    rank_min_picks: int = Field(
        3, ge=0,
        description="A subscriber with interests whose digest has fewer papers above rank_min_relevance is "
        "topped up to this many (at most max_papers) with the most upvoted allowed papers, reason "
        "'trending'. 0 disables.",
    )
    rank_negative_floor: float = Field(0.25, description="Similarity to a negative interest below this is ignored.")
    rank_mmr_lambda: float = Field(0.85, description="1 = pure score, lower = more diverse picks.")
    rank_window_days: int = Field(
        7, ge=1, description="Longest catch-up after missed digests, in days: a daily digest covers at most this "
        "many listing days, a weekly one 6 more (digest.cadence.reach_days); papers stored late for those days "
        "are offered too.",
    )
    weekly_max_papers: int = Field(
        25, ge=1, le=100, description="Papers per weekly digest unless the subscriber chooses (daily: 10).",
    )
    rank_lexical_weight: float = Field(
        1.0, ge=0, description="w in relevance = cosine + w x BM25n of the interest against the paper's title, "
        "abstract and AI keywords (idf over the stored papers). 0 = cosine only.",
    )
    rank_topup_min_relevance: float = Field(
        0.2, description="The top-up to rank_min_picks takes the most relevant remaining papers down to this "
        "relevance (reason 'closest: ...'), then the most upvoted ('trending'): below it relevance says nothing "
        "(half of the unrelated phrase-paper pairs score 0.18 or more).",
    )
    rank_rising_weight: float = Field(
        0.05, ge=0, description="Weight of the rising signal (upvotes gained per hour over the last 48 h, log "
        "scale, 1 at 10 an hour); shown as the reason where it decides a pick. Like trending it is a popularity "
        "signal in [0, 1]: bench/ranking_quality.py's trending sweep bounds its cost (upvotes independent of "
        "relevance, the worst case): popularity weight 0.1 in all (trending 0.05 + rising 0.05) costs 0.5 point "
        "of top-1 relevance.",
    )
    rank_like_weight: float = Field(
        0.15, ge=0, description="Most a 'more like this' vote (or all of them together) adds to the relevance "
        "of papers like the voted one.",
    )
    rank_dislike_weight: float = Field(
        0.3, ge=0, description="Most a 'less like this' vote (or all of them together) takes from the "
        "relevance of papers like the voted one.",
    )
    rank_vote_floor: float = Field(
        0.45, ge=0, lt=1, description="A vote affects only papers whose cosine with the voted paper exceeds this "
        "(about 1 pair of papers in 5 on real listings); its effect grows linearly up to rank_vote_full.",
    )
    rank_vote_full: float = Field(
        0.7, gt=0, le=1, description="Cosine with the voted paper at which a vote has its full effect.",
    )
    rank_follow_boost: float = Field(
        0.15, ge=0, le=0.5, description="Added to the relevance of a paper from a lab or by an author the "
        "subscriber follows (once, however many follows match); such a paper passes the relevance threshold "
        "even without a matching interest. Bounded so that a follow never outweighs a strong interest match.",
    )

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
    flow_send_batch: int = Field(2000, ge=1, description="Deliveries per Prefect send task (at most).")
    task_runner: Literal["thread", "dask"] = Field(
        "thread",
        description="Where the flows' batch tasks run (send batches; embedding in a backfill): `thread`, threads "
        "of the flow's process; `dask`, a Dask cluster through prefect-dask (`dask_address`, or a temporary "
        "local cluster of `dask_workers` processes).",
    )
    dask_address: str | None = Field(
        None, description="Scheduler of an existing Dask cluster, e.g. tcp://10.0.0.5:8786 (task_runner=dask)."
    )
    dask_workers: int = Field(
        2, ge=1, le=256,
        description="Worker processes of the temporary local Dask cluster, when `dask_address` is unset.",
    )
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
    send_batch_size: int = Field(50, ge=1, description="Deliveries claimed at once by one sender.")
    send_lease_seconds: float = Field(
        300, ge=0, description="A row left 'sending' this long belongs to a dead sender and is re-sent."
    )
    send_retry_initial: float = 2.0
    send_retry_max: float = 300.0
    send_deadline_seconds: float = Field(1800, description="How long one run keeps retrying 4xx replies.")
    send_max_consecutive_errors: int = Field(10, ge=1)
    send_recipient_deadline_seconds: float = Field(
        600, gt=0, description="How long one run keeps retrying one recipient (greylisting, 4xx, a refusal by "
        "the server); after that the row stays planned for the next run and the others go on.",
    )
    send_lease_wait_seconds: float = Field(
        360, ge=0, description="How long the daily flow's send step waits for deliveries another sender "
        "still holds (a crashed run's lease) before it fails instead of completing.",
    )
    send_mark_every: int = Field(
        10, ge=1, description="Accepted messages recorded as sent in one statement: a crash re-sends at "
        "most this many (with the same Message-ID).",
    )
    send_mark_seconds: float = Field(
        0.2, gt=0, description="...or fewer, once the oldest accepted message has waited this long.",
    )

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
    confirm_interval_hours: float = Field(
        24, gt=0, description="At least this long between two confirmation mails to one address, whoever "
        "asks and from wherever (and never two on one day: the outbox keeps one per subscriber and day).",
    )
    preferences_link_days: int = Field(
        90, ge=1, description="How long a preferences link works; every digest carries a fresh one."
    )
    web_trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Addresses or CIDR networks of the reverse proxies in front of `digest web`, comma "
        "separated. Only a request from one of them has its X-Forwarded-For read for the client address "
        "(the sign-up rate limit's key); default none: the TCP peer is the client.",
    )

    @field_validator("web_trusted_proxies", mode="before")
    @classmethod
    def _proxies(cls, value: object) -> object:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, list):
            for v in value:
                try:
                    ip_network(str(v), strict=False)
                except ValueError:
                    raise ValueError(f"DIGEST_WEB_TRUSTED_PROXIES: {v!r} is not an IP address or network") from None
        return value


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
