"""`digest subscribers import` / `export` through the real command (Typer's CliRunner) on a real SQLite file:
good and bad rows, --update, --strict, --pending (confirmation mails through the outbox and a real SMTP
server), the file round trip, and interest vectors computed where interests are written (real model)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select
from typer.testing import CliRunner

from digest import pipeline
from digest.cli import app
from digest.config import Settings
from digest.models import SubscriberStatus
from digest.send import send_confirmations
from digest.signing import LinkSigner
from digest.sources.huggingface import load_listing_file
from digest.store import session_factory
from digest.store.subscribers import list_subscribers
from digest.store.tables import DeliveryRow, InterestEmbeddingRow, SubscriberRow

from .builders import API_2025_06_05, SECRET, add_reader, confirm_link, link_key, smtp_settings
from .smtp_server import SmtpTestServer

runner = CliRunner()

GOOD_AND_BAD = """email,name,interests,max_papers
ada@example.org,Ada Lovelace,video diffusion; LLM reasoning,5
not-an-address,Eve,robots,3
bob@example.org,,graph neural networks,
carol@example.org,Carol,,twelve
dan@example.org,Dan,speech,0
Ada@Example.org,Ada again,robots,4

erin@example.org,Erin,"retrieval, RAG; agents",10,extra
frank@example.org,"Frank ""F"" Smith",world models,100
"""


def env(settings: Settings, **extra: str) -> dict[str, str]:
    return {"DIGEST_DATABASE_URL": settings.database_url, "DIGEST_EMBED_INTERESTS_ON_WRITE": "false", **extra}


def write(tmp_path: Path, text: str, name: str = "subscribers.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def stored(settings: Settings, status: SubscriberStatus | None = None) -> dict[str, tuple]:
    engine = pipeline.open_store(settings)
    with session_factory(engine)() as s:
        subs = list_subscribers(s, status)
    engine.dispose()
    return {x.email: (x.name, x.interests, x.max_papers, x.status.value) for x in subs}


def follows(settings: Settings) -> dict[str, tuple]:
    engine = pipeline.open_store(settings)
    with session_factory(engine)() as s:
        subs = list_subscribers(s)
    engine.dispose()
    return {x.email: (x.follow_orgs, x.follow_authors, x.only_with_code) for x in subs}


def test_import_keeps_good_rows_and_reports_bad_ones_by_line(settings: Settings, tmp_path: Path) -> None:
    result = runner.invoke(app, ["subscribers", "import", str(write(tmp_path, GOOD_AND_BAD))], env=env(settings))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "imported 3, updated 0, skipped 0 (already subscribed), invalid 5" in out
    assert "line 3: invalid email address 'not-an-address'" in out
    assert "line 5: max_papers must be a whole number between 1 and 100, not 'twelve'" in out
    assert "line 6: max_papers must be a whole number between 1 and 100, not '0'" in out
    assert "line 7: ada@example.org is already on line 2" in out
    assert "line 9: 5 cells, the header has 4 columns" in out
    assert "Traceback" not in out
    assert stored(settings) == {
        "ada@example.org": ("Ada Lovelace", ("video diffusion", "LLM reasoning"), 5, "active"),
        "bob@example.org": (None, ("graph neural networks",), 10, "active"),
        "frank@example.org": ('Frank "F" Smith', ("world models",), 100, "active"),
    }
    engine = pipeline.open_store(settings)
    with session_factory(engine)() as s:
        keys = [r.link_key for r in s.scalars(select(SubscriberRow))]
        assert all(r.confirmed_at is not None for r in s.scalars(select(SubscriberRow)))
    assert len(set(keys)) == 3  # every subscriber its own random link key

    again = runner.invoke(app, ["subscribers", "import", str(write(tmp_path, GOOD_AND_BAD))], env=env(settings))
    assert "imported 0, updated 0, skipped 3 (already subscribed), invalid 5" in again.output


def test_update_changes_the_file_s_columns_only(settings: Settings, tmp_path: Path) -> None:
    first = "email,name,interests,max_papers\nada@example.org,Ada,robots,5\nbob@example.org,Bob,speech,7\n"
    assert runner.invoke(app, ["subscribers", "import", str(write(tmp_path, first))], env=env(settings)).exit_code == 0
    change = "email,interests\nada@example.org,world models;agents\nnew@example.org,ocr\n"
    path = write(tmp_path, change, "change.csv")
    skipped = runner.invoke(app, ["subscribers", "import", str(path)], env=env(settings))
    assert "imported 1, updated 0, skipped 1" in skipped.output
    assert stored(settings)["ada@example.org"] == ("Ada", ("robots",), 5, "active")
    updated = runner.invoke(app, ["subscribers", "import", "--update", str(path)], env=env(settings))
    assert "imported 0, updated 2, skipped 0" in updated.output, updated.output
    subs = stored(settings)
    assert subs["ada@example.org"] == ("Ada", ("world models", "agents"), 5, "active")  # name, max kept
    assert subs["bob@example.org"] == ("Bob", ("speech",), 7, "active")
    assert subs["new@example.org"] == (None, ("ocr",), 10, "active")


def test_strict_refuses_the_whole_file(settings: Settings, tmp_path: Path) -> None:
    result = runner.invoke(app, ["subscribers", "import", "--strict", str(write(tmp_path, GOOD_AND_BAD))],
                           env=env(settings))
    assert result.exit_code == 2
    assert "5 bad rows, nothing imported (--strict): line 3: invalid email address" in result.output
    assert "(and 0 more)" not in result.output and "Traceback" not in result.output
    assert stored(settings) == {}


@pytest.mark.parametrize("text, message", [
    ("", "is empty: the first row must name the columns"),
    ("name,interests\nAda,robots\n", "the header has no 'email' column"),
    ("email,colour\na@example.org,red\n", "unknown column 'colour' in the header"),
    ("email,email\na@example.org,b@example.org\n", "column 'email' appears twice"),
])
def test_a_file_that_is_not_a_subscriber_file_is_one_line(settings: Settings, tmp_path: Path, text: str,
                                                          message: str) -> None:
    result = runner.invoke(app, ["subscribers", "import", str(write(tmp_path, text))], env=env(settings))
    assert result.exit_code == 2 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


def test_not_utf8_or_missing_file(settings: Settings, tmp_path: Path) -> None:
    latin = tmp_path / "latin.csv"
    latin.write_bytes("email,name\nj@example.org,J\xfcrgen\n".encode("latin-1"))
    bad = runner.invoke(app, ["subscribers", "import", str(latin)], env=env(settings))
    assert bad.exit_code == 2 and "is not a UTF-8 CSV file" in bad.output
    gone = runner.invoke(app, ["subscribers", "import", str(tmp_path / "nope.csv")], env=env(settings))
    assert gone.exit_code == 2 and "cannot read" in gone.output


def test_pending_queues_a_confirmation_mail_each(settings: Settings, tmp_path: Path, smtp: SmtpTestServer) -> None:
    text = "email,interests\nada@example.org,robots\nbob@example.org,speech\n"
    result = runner.invoke(app, ["subscribers", "import", "--pending", str(write(tmp_path, text))],
                           env=env(settings))
    assert result.exit_code == 0, result.output
    assert "imported 2" in result.output and "2 confirmation mails queued" in result.output
    assert {e: v[3] for e, v in stored(settings).items()} == {"ada@example.org": "pending",
                                                              "bob@example.org": "pending"}
    engine = pipeline.open_store(settings)
    report = send_confirmations(engine, smtp_settings(smtp.port, settings, secret_key=SecretStr(SECRET)))
    assert report.sent == 2
    assert sorted(smtp.by_rcpt()) == ["ada@example.org", "bob@example.org"]
    assert "/confirm/" in confirm_link(smtp, "ada@example.org")
    with session_factory(engine)() as s:
        assert s.scalar(select(func.count()).select_from(DeliveryRow).where(DeliveryRow.kind == "confirm")) == 2


def test_export_writes_the_import_format_and_round_trips(settings: Settings, tmp_path: Path,
                                                         db_url: str) -> None:
    text = ("email,name,interests,max_papers,follow_orgs,follow_authors,only_with_code\n"
            "ada@example.org,Ada,\"video diffusion; =SUM(A1)\",5,nvidia; Shanghai AI Laboratory,Jane Doe,yes\n"
            "bob@example.org,\"-Bob, the builder\",,10,,,\n")
    assert runner.invoke(app, ["subscribers", "import", str(write(tmp_path, text))], env=env(settings)).exit_code == 0
    out = tmp_path / "out.csv"
    result = runner.invoke(app, ["subscribers", "export", str(out)], env=env(settings))
    assert result.exit_code == 0 and "exported 2 subscribers" in result.output
    rows = list(csv.reader(out.open(encoding="utf-8", newline="")))
    assert rows == [["email", "name", "interests", "max_papers", "frequency", "weekday", "follow_orgs",
                     "follow_authors", "only_with_code"],
                    ["ada@example.org", "Ada", "video diffusion; =SUM(A1)", "5", "daily", "",
                     "nvidia; Shanghai AI Laboratory", "Jane Doe", "true"],
                    ["bob@example.org", "'-Bob, the builder", "", "10", "daily", "", "", "", "false"]]  # a formula is not run by a spreadsheet
    assert follows(settings)["ada@example.org"] == (("nvidia", "Shanghai AI Laboratory"), ("Jane Doe",), True)
    other = Settings(_env_file=None, database_url=f"sqlite:///{tmp_path / 'other.db'}")  # type: ignore[call-arg]
    back = runner.invoke(app, ["subscribers", "import", str(out)], env=env(other))
    assert back.exit_code == 0 and "imported 2" in back.output
    assert stored(other) == stored(settings) and follows(other) == follows(settings)
    pending = runner.invoke(app, ["subscribers", "export", "--status", "pending", str(out)], env=env(settings))
    assert "exported 0 subscribers" in pending.output
    wrong = runner.invoke(app, ["subscribers", "export", "--status", "gone", str(out)], env=env(settings))
    assert wrong.exit_code == 2 and "--status must be one of" in wrong.output


def test_only_with_code_takes_yes_no_and_refuses_anything_else(settings: Settings, tmp_path: Path) -> None:
    text = ("email,only_with_code\nada@example.org,1\nbob@example.org,No\ncy@example.org,\n"
            "dee@example.org,maybe\n")
    result = runner.invoke(app, ["subscribers", "import", str(write(tmp_path, text))], env=env(settings))
    assert result.exit_code == 0, result.output
    assert "line 5" in result.output and "only_with_code must be true, false, yes, no, 1 or 0" in result.output
    assert {e: v[2] for e, v in follows(settings).items()} == {"ada@example.org": True, "bob@example.org": False,
                                                             "cy@example.org": False}


def test_the_cadence_columns(settings: Settings, tmp_path: Path) -> None:
    """frequency and weekday: weekly without a weekday comes on Friday with the weekly number of papers; a
    weekday without weekly, or a weekday that is none, is a bad row; export writes them back."""
    text = ("email,max_papers,frequency,weekday\n"
            "ada@example.org,,weekly,thu\n"
            "bob@example.org,,weekly,\n"
            "carol@example.org,7,,\n"
            "dan@example.org,,daily,mon\n"
            "erin@example.org,,weekly,someday\n"
            "frank@example.org,,monthly,\n")
    result = runner.invoke(app, ["subscribers", "import", str(write(tmp_path, text))],
                           env=env(settings, DIGEST_WEEKLY_MAX_PAPERS="20"))
    assert result.exit_code == 0, result.output
    assert "imported 3, updated 0, skipped 0 (already subscribed), invalid 3" in result.output
    assert "line 5: weekday: only a weekly digest has a weekday" in result.output
    assert "line 6: weekday must be one of mon, tue" in result.output
    assert "line 7: frequency must be one of daily, weekly, not 'monthly'" in result.output
    engine = pipeline.open_store(settings)
    with session_factory(engine)() as s:
        got = {x.email: (x.frequency, x.weekday, x.max_papers) for x in list_subscribers(s)}
    engine.dispose()
    assert got == {"ada@example.org": ("weekly", 3, 20), "bob@example.org": ("weekly", 4, 20),
                   "carol@example.org": ("daily", None, 7)}
    out = tmp_path / "out.csv"
    assert runner.invoke(app, ["subscribers", "export", str(out)], env=env(settings)).exit_code == 0
    rows = list(csv.reader(out.open(encoding="utf-8", newline="")))
    assert [r[3:6] for r in rows] == [["max_papers", "frequency", "weekday"], ["20", "weekly", "thu"],
                                     ["20", "weekly", "fri"], ["7", "daily", ""]]


@pytest.mark.slow
def test_interest_vectors_are_computed_where_interests_are_written(settings: Settings, tmp_path: Path) -> None:
    """Import and `subscribers add` cache the vectors of what they write (one bulk insert per batch);
    a day's plan then encodes nothing for them, and with the cache off it encodes exactly what is missing."""
    on = env(settings, DIGEST_EMBED_INTERESTS_ON_WRITE="true")
    text = "email,interests\nada@example.org,video diffusion;LLM reasoning\nbob@example.org,LLM reasoning\n"
    result = runner.invoke(app, ["subscribers", "import", str(write(tmp_path, text))], env=on)
    assert result.exit_code == 0, result.output
    assert "embedded 2 interests" in result.output
    add = runner.invoke(app, ["subscribers", "add", "carol@example.org", "-i", "robot grasping",
                              "--not-interested", "LLM reasoning"], env=on)
    assert add.exit_code == 0, add.output
    engine = pipeline.open_store(settings)
    with session_factory(engine)() as s:
        cached = set(s.scalars(select(InterestEmbeddingRow.text)))
    assert cached == {"video diffusion", "LLM reasoning", "robot grasping"}
    off = runner.invoke(app, ["subscribers", "import", "--update", str(write(tmp_path, "email,interests\n"
                              "bob@example.org,speech recognition\n", "b.csv"))], env=env(settings))
    assert off.exit_code == 0 and "embedded" not in off.output
    listing = load_listing_file(API_2025_06_05)
    pipeline.store(engine, listing)
    result_plan = pipeline.plan(engine, settings, listing.listing_date)
    assert (result_plan.interests_embedded, result_plan.embedded, result_plan.planned) == (1, 30, 3)
    with session_factory(engine)() as s:
        assert "speech recognition" in set(s.scalars(select(InterestEmbeddingRow.text)))


@pytest.mark.slow
def test_the_preferences_page_caches_the_vectors_of_what_it_saves(settings: Settings) -> None:
    """After the answer (a background task), the interests a subscriber saved are encoded and cached."""
    from fastapi.testclient import TestClient

    from digest.web import create_app

    web = settings.model_copy(update={"secret_key": SecretStr(SECRET), "public_url": "http://testserver",
                                      "embed_interests_on_write": True})
    pipeline.open_store(web)
    sid = add_reader(web, "pref@example.org", interests=())
    url = LinkSigner.from_settings(web).preferences_url(sid, key=link_key(web, sid))
    with TestClient(create_app(web)) as client:
        page = client.get(url)
        token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        form = {"interests": "protein folding\ndiffusion policies", "negative_interests": "survey papers",
                "include_keywords": "", "exclude_keywords": "", "max_papers": "5", "frequency": "daily",
                "csrf_token": token}
        saved = client.post(url, data=form, headers={"Origin": "http://testserver"})
    assert saved.status_code == 200 and "saved" in saved.text
    engine = pipeline.open_store(web)
    with session_factory(engine)() as s:
        cached = set(s.scalars(select(InterestEmbeddingRow.text)))
    assert cached == {"protein folding", "diffusion policies", "survey papers"}
