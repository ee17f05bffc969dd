"""The operator's commands on a real SQLite file: show and edit one subscriber (the existing validation, nothing
changed on a bad value, a bounced address made active again), list by status, and `digest status`: the
outbox by date and status, suppressed addresses and failures with their last error."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from digest import pipeline
from digest.cli import app
from digest.config import Settings
from digest.store import session_factory
from digest.store.outbox import plan_deliveries
from digest.store.papers import upsert_papers
from digest.store.subscribers import edit_subscriber, get_subscriber
from digest.store.tables import DeliveryRow, SubscriberRow

from .builders import paper, readers_with_picks, subscriber_row

runner = CliRunner()
DAY = date(2025, 6, 5)


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    pipeline.open_store(settings)
    return {"DIGEST_DATABASE_URL": settings.database_url, "PREFECT_API_URL": "", "PREFECT_HOME": "/nonexistent",
            "DIGEST_EMBED_INTERESTS_ON_WRITE": "false"}


def invoke(env: dict[str, str], *args: str) -> str:
    result = runner.invoke(app, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result.output


def test_edit_changes_every_field_and_show_shows_them(env: dict[str, str], settings: Settings) -> None:
    invoke(env, "subscribers", "add", "ada@example.org", "--interest", "robots")
    with session_factory(pipeline.open_store(settings)).begin() as s:  # a seed must be a known paper
        upsert_papers(s, [paper(1, arxiv_id="2506.01234")])
    invoke(env, "subscribers", "edit", "Ada@Example.org", "--interest", "video diffusion", "--interest",
           "LLM reasoning", "--not-interested", "surveys", "--include", "benchmark", "--exclude", "medical",
           "--seed-paper", "2506.01234v2", "--max-papers", "7", "--name", "Ada L.")
    row = subscriber_row(settings, "ada@example.org")
    assert row.interests == ["video diffusion", "LLM reasoning"] and row.negative_interests == ["surveys"]
    assert row.include_keywords == ["benchmark"] and row.exclude_keywords == ["medical"]
    assert row.seed_papers == ["2506.01234"] and row.max_papers == 7 and row.name == "Ada L."
    shown = invoke(env, "subscribers", "show", "ada@example.org")
    for text in ("ada@example.org", "Ada L.", "active", "video diffusion", "LLM reasoning", "surveys",
                 "benchmark", "medical", "2506.01234", "7", "no deliveries yet"):
        assert text in shown, text
    invoke(env, "subscribers", "edit", "ada@example.org", "--interest", "")  # an empty value clears a list
    assert subscriber_row(settings, "ada@example.org").interests == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["--max-papers", "0"], "between 1 and 100"),
        (["--interest", "x" * 201], "at most 200 characters"),
        (["--status", "gone"], "status must be one of"),
        (["--name", "Eve\nBcc: x@example.com"], "line break"),
        ([], "nothing to change"),
    ],
)
def test_a_bad_edit_is_one_line_and_changes_nothing(env: dict[str, str], settings: Settings, args: list[str],
                                                    message: str) -> None:
    invoke(env, "subscribers", "add", "ada@example.org", "--interest", "robots", "--max-papers", "5")
    before = subscriber_row(settings, "ada@example.org")
    result = runner.invoke(app, ["subscribers", "edit", "ada@example.org", "--interest", "new", *args], env=env) \
        if args else runner.invoke(app, ["subscribers", "edit", "ada@example.org"], env=env)
    assert result.exit_code == 2 and message in result.output, result.output
    assert len([ln for ln in result.output.splitlines() if ln.strip()]) == 1
    after = subscriber_row(settings, "ada@example.org")
    assert (after.interests, after.max_papers, after.status, after.name) == (
        before.interests, before.max_papers, before.status, before.name)


def test_unknown_subscriber_is_one_line(env: dict[str, str]) -> None:
    for cmd in (["show", "nobody@example.org"], ["edit", "nobody@example.org", "--max-papers", "3"]):
        result = runner.invoke(app, ["subscribers", *cmd], env=env)
        assert result.exit_code == 2 and "no subscriber nobody@example.org" in result.output


def test_status_active_unsuppresses_a_bounced_address(env: dict[str, str], settings: Settings) -> None:
    invoke(env, "subscribers", "add", "ada@example.org")
    invoke(env, "subscribers", "add", "bob@example.org")
    engine = pipeline.open_store(settings)
    with session_factory(engine).begin() as s:
        s.execute(update(SubscriberRow).where(SubscriberRow.email == "bob@example.org").values(status="bounced"))
    listed = invoke(env, "subscribers", "list", "--status", "bounced")
    assert "bob@example.org" in listed and "ada@example.org" not in listed and "1 subscribers" in listed
    invoke(env, "subscribers", "edit", "bob@example.org", "--status", "active")
    assert subscriber_row(settings, "bob@example.org").status == "active"
    assert "0 subscribers" in invoke(env, "subscribers", "list", "--status", "bounced")
    bad = runner.invoke(app, ["subscribers", "list", "--status", "gone"], env=env)
    assert bad.exit_code == 2


def test_edit_subscriber_door_keeps_what_it_is_not_told(settings: Settings) -> None:
    engine = pipeline.open_store(settings)
    with session_factory(engine).begin() as s:
        from digest.store.subscribers import add_subscriber

        add_subscriber(s, "ada@example.org", interests=["robots"], exclude_keywords=["medical"], max_papers=4)
    with session_factory(engine).begin() as s:
        sub = edit_subscriber(s, "ada@example.org", max_papers=9)
    assert (sub.interests, sub.exclude_keywords, sub.max_papers) == (("robots",), ("medical",), 9)
    with session_factory(engine).begin() as s, pytest.raises(TypeError, match="colour"):
        edit_subscriber(s, "ada@example.org", colour="blue")
    with session_factory(engine)() as s:
        assert get_subscriber(s, "ada@example.org").max_papers == 9


def test_status_shows_the_outbox_suppressed_and_failures(env: dict[str, str], settings: Settings) -> None:
    readers = readers_with_picks(settings, 5)
    earlier = DAY - timedelta(days=1)
    with session_factory(readers.engine).begin() as s:
        plan_deliveries(s, earlier, {sid: picks for sid, picks in readers.picks.items()})
        plan_deliveries(s, DAY, {sid: picks for sid, picks in readers.picks.items()})
        s.execute(update(DeliveryRow).where(DeliveryRow.digest_date == earlier).values(status="sent"))
        ids = readers.ids
        s.execute(update(DeliveryRow).where(DeliveryRow.digest_date == DAY, DeliveryRow.subscriber_id == ids[0])
                  .values(status="failed", attempts=1, last_error="550 5.1.1 <reader0@example.org>: no such user"))
        s.execute(update(DeliveryRow).where(DeliveryRow.digest_date == DAY, DeliveryRow.subscriber_id == ids[1])
                  .values(attempts=3, last_error="451 4.7.1 greylisted, try later"))
        s.execute(update(DeliveryRow).where(DeliveryRow.digest_date == DAY, DeliveryRow.subscriber_id == ids[2])
                  .values(status="sent"))
        s.execute(update(SubscriberRow).where(SubscriberRow.id == ids[0]).values(status="bounced"))
    shown = invoke(env, "status", "--date", DAY.isoformat())
    assert f"{DAY}: planned 3, sent 1, failed 1" in shown, shown
    assert f"{earlier}" in shown and "sent 5" in shown
    assert "Suppressed addresses (1)" in shown and "reader0@example.org" in shown
    assert "no such user" in shown and "greylisted" in shown
    assert "Prefect flow runs: no Prefect API" in shown, shown
