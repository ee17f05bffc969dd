"""The operator's commands on a real SQLite file: show and edit one subscriber (the existing validation, nothing
changed on a bad value, a bounced address made active again), list by status, and `digest status`: the
outbox by date and status, suppressed addresses and failures with their last error."""

from __future__ import annotations

import json
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


def test_cadence_from_the_cli_add_edit_show_list_and_not_due(env: dict[str, str], settings: Settings) -> None:
    """`--frequency weekly --weekday thu`, shown and listed; papers per digest follow the cadence's default
    unless chosen; `rank` and `preview` on another weekday say "not due" and when the next digest is."""
    out = invoke(env, "subscribers", "add", "wes@example.org", "--frequency", "weekly", "--weekday", "thu")
    assert "weekly on Thursday, 25 papers a digest" in out
    row = subscriber_row(settings, "wes@example.org")
    assert (row.frequency, row.weekday, row.max_papers) == ("weekly", 3, 25)
    invoke(env, "subscribers", "add", "dee@example.org", "--max-papers", "7")
    assert "weekly on Thursday" in invoke(env, "subscribers", "show", "wes@example.org")
    listed = invoke(env, "subscribers", "list")
    assert "weekly on Thursday" in listed and "daily" in listed

    invoke(env, "subscribers", "edit", "wes@example.org", "--weekday", "Monday")
    assert subscriber_row(settings, "wes@example.org").weekday == 0
    out = invoke(env, "subscribers", "edit", "wes@example.org", "--frequency", "daily")
    assert "daily, 10 papers a digest" in out  # the weekly default becomes the daily one
    row = subscriber_row(settings, "wes@example.org")
    assert (row.frequency, row.weekday, row.max_papers) == ("daily", None, 10)
    invoke(env, "subscribers", "edit", "dee@example.org", "--frequency", "weekly", "--weekday", "sun")
    row = subscriber_row(settings, "dee@example.org")
    assert (row.frequency, row.weekday, row.max_papers) == ("weekly", 6, 7)  # their own choice stays
    invoke(env, "subscribers", "edit", "wes@example.org", "--frequency", "weekly", "--max-papers", "10")
    assert subscriber_row(settings, "wes@example.org").max_papers == 10  # given: taken as it is

    rank = invoke(env, "rank", "--date", "2025-06-11", "--subscriber", "dee@example.org")
    assert "not due on 2025-06-11: weekly on Sunday (next digest 2025-06-15)" in rank
    as_json = json.loads(invoke(env, "rank", "--date", "2025-06-11", "--json"))
    assert [(x["subscriber"], x["cadence"], x["due"], x["picks"]) for x in as_json] == [
        ("wes@example.org", "weekly on Friday", False, []), ("dee@example.org", "weekly on Sunday", False, [])]
    preview = runner.invoke(app, ["preview", "dee@example.org", "--date", "2025-06-11"], env=env)
    assert preview.exit_code == 2 and "dee@example.org is not due on 2025-06-11: weekly on Sunday" in preview.output
    assert len([ln for ln in preview.output.splitlines() if ln.strip()]) == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--frequency", "hourly"], "frequency must be one of daily, weekly"),
        (["--weekday", "thu"], "a weekday is for weekly digests"),
        (["--frequency", "weekly", "--weekday", "someday"], "weekday must be one of mon, tue"),
    ],
)
def test_a_bad_cadence_is_one_line_and_stores_nothing(env: dict[str, str], settings: Settings, args: list[str],
                                                      message: str) -> None:
    result = runner.invoke(app, ["subscribers", "add", "eve@example.org", *args], env=env)
    assert result.exit_code == 2 and message in result.output, result.output
    assert len([ln for ln in result.output.splitlines() if ln.strip()]) == 1
    invoke(env, "subscribers", "add", "eve@example.org")
    edit = runner.invoke(app, ["subscribers", "edit", "eve@example.org", *args], env=env)
    assert edit.exit_code == 2 and message in edit.output, edit.output
    row = subscriber_row(settings, "eve@example.org")
    assert (row.frequency, row.weekday, row.max_papers) == ("daily", None, 10)
