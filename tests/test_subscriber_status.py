"""The operator's door to a subscriber's status: a suppressed (bounced) address can be restored."""

from __future__ import annotations

import pytest

from digest.config import Settings
from digest.models import SubscriberStatus
from digest.store import create_db_engine, session_factory
from digest.store.subscribers import SubscriberNotFoundError, set_status

from .builders import add_reader, subscriber_row


def test_a_suppressed_address_is_restored(settings: Settings) -> None:
    from digest import pipeline

    pipeline.open_store(settings)
    add_reader(settings, "ada@example.org", status="bounced")
    sessions = session_factory(create_db_engine(settings.database_url))
    with sessions.begin() as s:
        sub = set_status(s, " Ada@Example.org ", SubscriberStatus.active)
    assert sub.status is SubscriberStatus.active and sub.email == "ada@example.org"
    assert subscriber_row(settings, "ada@example.org").status == "active"
    with sessions.begin() as s:
        assert set_status(s, "ada@example.org", "unsubscribed").status is SubscriberStatus.unsubscribed


def test_bad_status_or_unknown_address_is_a_clear_error(settings: Settings) -> None:
    from digest import pipeline

    pipeline.open_store(settings)
    add_reader(settings, "ada@example.org", status="bounced")
    sessions = session_factory(create_db_engine(settings.database_url))
    with sessions.begin() as s, pytest.raises(ValueError, match="status must be one of"):
        set_status(s, "ada@example.org", "happy")
    with sessions.begin() as s, pytest.raises(SubscriberNotFoundError):
        set_status(s, "nobody@example.org", SubscriberStatus.active)
    assert subscriber_row(settings, "ada@example.org").status == "bounced"
