"""Which days the daily flow covers, on real Prefect (test harness), a local HF stand-in over HTTP whose
listings change between runs, the real SMTP test server and a real SQLite file: the scheduled run mails the
last complete day, the re-fetch reaches back to the last day that had a listing, an empty weekday is loud
and an empty weekend quiet, and a host that does not resolve is not retried."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, select

from digest import pipeline
from digest.config import Settings
from digest.rank import keyword_pattern
from digest.store import session_factory
from digest.store.subscribers import add_subscriber
from digest.store.tables import DeliveryItemRow, DeliveryRow

from .builders import API_2025_06_05, SECRET, Answer, HfScript, Query, bare_settings, items_for
from .smtp_server import SmtpTestServer

SOURCE: list[dict[str, Any]] = json.loads(API_2025_06_05.read_text())
FRI, SAT, SUN, MON = date(2025, 6, 6), date(2025, 6, 7), date(2025, 6, 8), date(2025, 6, 9)
TUE, WED = date(2025, 6, 10), date(2025, 6, 11)


# -- the days themselves (no Prefect) ---------------------------------------------------------------------


def test_scheduled_day_is_today_minus_the_lag_in_the_timezone() -> None:
    for tz in ("Pacific/Kiritimati", "Pacific/Pago_Pago", "UTC"):
        today = datetime.now(ZoneInfo(tz)).date()
        assert pipeline.scheduled_day(bare_settings(timezone=tz)) == today - timedelta(days=1)
        assert pipeline.scheduled_day(bare_settings(timezone=tz, lag_days=0)) == today
        assert pipeline.scheduled_day(bare_settings(timezone=tz, lag_days=2)) == today - timedelta(days=2)


@pytest.mark.parametrize(
    "last_listed, max_days, expected",
    [
        (date(2025, 6, 8), 4, [date(2025, 6, 8)]),  # an ordinary day: the day before, which had a listing
        (FRI, 4, [FRI, SAT, SUN]),  # after a weekend: back to Friday, whose list also grew late
        (date(2025, 6, 3), 4, [date(2025, 6, 5), date(2025, 6, 6), SAT, SUN]),  # bounded by the setting
        (None, 2, [SAT, SUN]),  # nothing stored yet: the whole bound
        (FRI, 0, []),  # 0: no re-fetch
    ],
)
def test_refetch_reaches_back_to_the_last_listed_day(last_listed: date | None, max_days: int,
                                                     expected: list[date]) -> None:
    assert pipeline.refetch_days(MON, last_listed, max_days) == expected


# -- the flow ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlowEnv:
    settings: Settings
    engine: Engine
    hf: HfScript
    smtp: SmtpTestServer


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, settings: Settings, hf_server: HfScript, smtp: SmtpTestServer) -> FlowEnv:
    values = {
        "DIGEST_DATABASE_URL": settings.database_url, "DIGEST_HF_BASE_URL": hf_server.base,
        "DIGEST_SMTP_HOST": "127.0.0.1", "DIGEST_SMTP_PORT": str(smtp.port),
        "DIGEST_SMTP_SECURITY": "none", "DIGEST_SECRET_KEY": SECRET,
        "DIGEST_HTTP_MAX_ATTEMPTS": "1",
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    s = Settings()
    engine = pipeline.open_store(s)
    with session_factory(engine).begin() as sess:
        add_subscriber(sess, "alan@example.org", max_papers=40)  # no interests: trending, everything
    return FlowEnv(s, engine, hf_server, smtp)


def serve_by_date(hf: HfScript, listings: dict[date, list[dict[str, Any]]]) -> None:
    """The stand-in answers each requested date from ``listings`` (missing: an empty day)."""

    def by_date(query: Query) -> Answer:
        day = date.fromisoformat(query["date"][0])
        return 200, {}, items_for(day, listings.get(day, []))

    hf.routes["/api/daily_papers"] = by_date


def requested_dates(hf: HfScript, since: int = 0) -> list[date]:
    return [date.fromisoformat(e[2]["date"][0]) for e in hf.log[since:] if e[1] == "/api/daily_papers"]


def mailed(engine: Engine, day: date) -> set[str]:
    with session_factory(engine)() as sess:
        return set(sess.scalars(
            select(DeliveryItemRow.arxiv_id).join(DeliveryRow).where(DeliveryRow.digest_date == day)))


@pytest.mark.slow
def test_the_scheduled_run_mails_the_last_complete_day(prefect_harness: None, env: FlowEnv,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.daily import daily_digest

    monkeypatch.setenv("DIGEST_TIMEZONE", "Pacific/Kiritimati")  # UTC+14: its today is not UTC's
    yesterday = datetime.now(ZoneInfo("Pacific/Kiritimati")).date() - timedelta(days=1)
    serve_by_date(env.hf, {yesterday: SOURCE[:8]})
    summary = daily_digest()
    assert summary.day == yesterday
    assert requested_dates(env.hf)[0] == yesterday, "the digest's own day is fetched first"
    assert summary.papers_fetched == 8 and summary.sent == 1


@pytest.mark.slow
def test_two_empty_days_in_a_row_lose_nothing(prefect_harness: None, env: FlowEnv) -> None:
    from flows.daily import daily_digest

    friday, late_sat, late_sun, monday = SOURCE[:8], SOURCE[8:14], SOURCE[14:20], SOURCE[20:]
    serve_by_date(env.hf, {FRI: friday})
    assert daily_digest(day=FRI).sent == 1
    for weekend_day in (SAT, SUN):  # both empty when their runs look
        assert daily_digest(day=weekend_day).papers_fetched == 0
    # By Monday's run, HF has listed papers on Saturday and Sunday after all.
    serve_by_date(env.hf, {FRI: friday, SAT: late_sat, SUN: late_sun, MON: monday})
    before = len(env.hf.log)
    summary = daily_digest(day=MON)
    assert sorted(requested_dates(env.hf, before)) == [FRI, SAT, SUN, MON], "back to the last listed day"
    assert summary.papers_late == len(late_sat) + len(late_sun)
    ids = {it["paper"]["id"] for it in late_sat + late_sun + monday}
    assert ids <= mailed(env.engine, MON), "Saturday's late papers are mailed, not lost"
    assert not ({it["paper"]["id"] for it in friday} & mailed(env.engine, MON))


@pytest.mark.slow
def test_an_empty_weekday_is_loud_an_empty_weekend_quiet(prefect_harness: None, env: FlowEnv) -> None:
    from prefect.client.orchestration import get_client

    from flows.daily import daily_digest

    serve_by_date(env.hf, {})
    state = daily_digest(day=WED, return_state=True)
    assert state.is_completed() and state.name == "NoListing"
    summary = state.result()
    assert summary.day == WED and "weekday" in summary.listing and summary.sent == 0
    assert "Wednesday" in (state.message or "")

    async def artifact() -> str:
        async with get_client() as client:
            found = await client.read_latest_artifacts()
            return next(a.data for a in found if a.key == f"digest-{WED.isoformat()}")

    assert "weekday" in asyncio.run(artifact())
    quiet = daily_digest(day=SAT, return_state=True)
    assert quiet.is_completed() and quiet.name == "Completed"
    assert "weekday" not in quiet.result().listing


@pytest.mark.slow
def test_an_unresolvable_host_is_not_retried(prefect_harness: None, env: FlowEnv,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from digest.sources import HostNotFoundError
    from flows.daily import daily_digest

    monkeypatch.setenv("DIGEST_HF_BASE_URL", "http://papers-digest-test.invalid")
    monkeypatch.setenv("DIGEST_HTTP_MAX_ATTEMPTS", "5")
    state = daily_digest(day=WED, return_state=True)
    assert state.is_failed() and isinstance(state.result(raise_on_failure=False), HostNotFoundError)

    async def fetch_runs() -> list[int]:
        async with get_client() as client:
            runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))
            return [r.run_count for r in runs if r.task_key.startswith("fetch_listing")]

    assert asyncio.run(fetch_runs()) == [1]


def mailed_ids(smtp: SmtpTestServer) -> dict[str, list[list[str]]]:
    """Per recipient, the arXiv ids of each mail they received, in order, read off the text part."""
    out: dict[str, list[list[str]]] = {}
    for rcpt, mails in smtp.by_rcpt().items():
        for m in mails:
            body = m.parse().get_body(("plain",))
            assert body is not None
            out.setdefault(rcpt, []).append(re.findall(r"arxiv\.org/abs/([0-9.]+)", body.get_content()))
    return out


def with_keyword(items: list[dict[str, Any]], keyword: str) -> set[str]:
    """The ids of ``items`` whose title, abstract or AI keywords mention ``keyword`` (as an include filter
    reads it)."""
    pattern = keyword_pattern(keyword)
    return {it["paper"]["id"] for it in items
            if pattern.search(" ".join([it["paper"]["title"], it["paper"]["summary"],
                                        *(it["paper"].get("ai_keywords") or [])]))}


@pytest.mark.slow
def test_papers_listed_late_on_a_mailed_day_are_mailed_the_next_day(prefect_harness: None, env: FlowEnv) -> None:
    """Tuesday is mailed with its early papers; Tuesday's list then grows; Wednesday's run mails the late
    ones to the subscribers they match, and nobody gets any paper twice (nor yesterday's leftovers)."""
    from flows.daily import daily_digest

    with session_factory(env.engine).begin() as sess:  # alan (everything, 40 a mail) is the fixture's
        add_subscriber(sess, "bea@example.org", include_keywords=["diffusion"], max_papers=40)
        add_subscriber(sess, "cy@example.org", max_papers=3)  # the 3 most upvoted: leaves papers out
    early, late, wednesday = SOURCE[:10], SOURCE[10:20], SOURCE[20:]
    serve_by_date(env.hf, {TUE: early})
    assert daily_digest(day=TUE).sent == 3
    serve_by_date(env.hf, {TUE: early + late, WED: wednesday})  # HF adds papers to Tuesday after its run
    summary = daily_digest(day=WED)
    assert summary.papers_late == len(late)

    got = mailed_ids(env.smtp)
    ids = lambda items: {it["paper"]["id"] for it in items}  # noqa: E731
    assert set(got["alan@example.org"][0]) == ids(early)
    assert set(got["alan@example.org"][1]) == ids(late + wednesday), "every late paper reaches alan"
    diffusion = with_keyword(SOURCE, "diffusion")
    assert diffusion & ids(late) and diffusion - ids(late), "the test needs late papers bea wants and others"
    assert set(got["bea@example.org"][0]) == diffusion & ids(early)
    assert set(got["bea@example.org"][1]) == diffusion & ids(late + wednesday), "the late ones bea matches"
    assert set(got["cy@example.org"][1]) <= ids(late + wednesday), "Tuesday's leftovers are not offered again"
    for rcpt, mails in got.items():
        every = [a for mail in mails for a in mail]
        assert len(every) == len(set(every)), f"{rcpt} got a paper twice"


@pytest.mark.slow
def test_weekly_subscribers_get_one_digest_of_their_week_on_their_weekday(prefect_harness: None,
                                                                        env: FlowEnv) -> None:
    """A week of scheduled runs, Friday to Thursday: the daily subscriber gets each weekday's papers; a
    weekly subscriber on Thursday gets one digest on Thursday with the whole week ranked together; a weekly
    subscriber on Sunday gets theirs on Sunday though Sunday lists nothing."""
    from flows.daily import daily_digest

    with session_factory(env.engine).begin() as sess:
        add_subscriber(sess, "wes@example.org", frequency="weekly", weekday="thu", max_papers=40)
        add_subscriber(sess, "sue@example.org", frequency="weekly", weekday="sun", max_papers=40)
    THU = date(2025, 6, 12)
    weekdays = [FRI, MON, date(2025, 6, 10), WED, THU]
    listings = {d: SOURCE[6 * i:6 * i + 6] for i, d in enumerate(weekdays)}
    serve_by_date(env.hf, listings)
    counts: dict[date, dict[str, int]] = {}
    for k in range(7):
        day = FRI + timedelta(days=k)
        before = {r: len(m) for r, m in env.smtp.by_rcpt().items()}
        state = daily_digest(day=day, return_state=True)
        assert state.is_completed() and state.name == "Completed", (day, state.name)  # weekends stay quiet
        counts[day] = {r: len(m) - before.get(r, 0) for r, m in env.smtp.by_rcpt().items()}

    got = mailed_ids(env.smtp)
    ids = lambda items: {it["paper"]["id"] for it in items}  # noqa: E731
    assert [counts[d].get("alan@example.org", 0) for d in sorted(counts)] == [1, 0, 0, 1, 1, 1, 1]
    assert [counts[d].get("wes@example.org", 0) for d in sorted(counts)] == [0, 0, 0, 0, 0, 0, 1]
    assert [counts[d].get("sue@example.org", 0) for d in sorted(counts)] == [0, 0, 1, 0, 0, 0, 0]
    assert set(got["sue@example.org"][0]) == ids(listings[FRI]), "Sunday: the week up to Sunday"
    assert set(got["wes@example.org"][0]) == ids(SOURCE), "Thursday: Friday to Thursday in one digest"
    subjects = {r: [m.parse()["Subject"] for m in mails] for r, mails in env.smtp.by_rcpt().items()}
    assert subjects["wes@example.org"][0].startswith("Daily Papers, week to 2025-06-12: ")
    assert subjects["alan@example.org"][-1].startswith("Daily Papers, 2025-06-12: ")
