"""One rule for every door (issue 11 Medium-9): an address with non-ASCII characters is never accepted, since
the sender cannot deliver it (no SMTPUTF8); the refusal says what to use instead. An address stored before
the rule can still be found and removed."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from digest.cli import app
from digest.config import Settings
from digest.models import InvalidAddressError, normalise_email
from digest.store import create_db_engine, session_factory, upgrade
from digest.store.subscribers import add_subscriber, find_subscriber, remove_subscriber, request_subscription

NON_ASCII = ["jürgen@example.org", "ada@bücher.de", "用户@例子.广告", "ｆｕｌｌｗｉｄｔｈ@example.org"]


@pytest.mark.parametrize("address", NON_ASCII)
def test_non_ascii_addresses_are_refused_with_the_reason(address: str) -> None:
    with pytest.raises(InvalidAddressError, match="non-ASCII"):
        normalise_email(address)


def test_an_international_domain_is_offered_in_its_ascii_form() -> None:
    with pytest.raises(InvalidAddressError, match=r"ada@xn--bcher-kva\.de"):
        normalise_email("Ada@Bücher.de")
    assert normalise_email("Ada@xn--bcher-kva.de") == "ada@xn--bcher-kva.de"


def test_the_store_doors_refuse_them(settings: Settings) -> None:
    engine = create_db_engine(settings.database_url)
    upgrade(engine)
    for door in (lambda s: add_subscriber(s, "jürgen@example.org"),
                 lambda s: request_subscription(s, "jürgen@example.org", ["x"], 5)):
        with session_factory(engine).begin() as s, pytest.raises(InvalidAddressError, match="non-ASCII"):
            door(s)


def test_an_address_stored_before_the_rule_can_still_be_found_and_removed(settings: Settings) -> None:
    engine = create_db_engine(settings.database_url)
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO subscribers (email, status, interests, negative_interests, include_keywords, "
            "exclude_keywords, seed_papers, max_papers, frequency, timezone, created_at, link_key, "
            "status_changed_at) VALUES ('jürgen@example.org', 'active', '[]', '[]', '[]', '[]', '[]', 10, "
            "'daily', 'UTC', '2026-11-01 00:00:00', 'k', '2026-11-01 00:00:00')"))
    with session_factory(engine).begin() as s:
        assert find_subscriber(s, email="Jürgen@example.org") is not None
        remove_subscriber(s, "jürgen@example.org")
        assert find_subscriber(s, email="jürgen@example.org") is None


def test_the_cli_refuses_them_in_one_line(db_url: str) -> None:
    result = CliRunner().invoke(app, ["subscribers", "add", "jürgen@example.org"], env={"DIGEST_DATABASE_URL": db_url})
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "non-ASCII" in lines[0], result.output
