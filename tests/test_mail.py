"""The MIME message, and delivering it to a real aiosmtpd server on 127.0.0.1 and to .eml files."""

from __future__ import annotations

import smtplib
import socket
from datetime import date, datetime, timezone
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from digest.mail import (
    FileTransport,
    ListHeaders,
    OutgoingMail,
    PermanentSendError,
    SendError,
    SmtpTransport,
    TransientSendError,
    build_mail,
    classify,
    make_transport,
    message_id,
)
from digest.mailsink import free_port
from digest.models import Subscriber
from digest.render import HTML_LIMIT, render_digest

from .builders import DAY, HOSTILE_TITLE, LINK_KEY, bare_settings, make_context, paper, smtp_settings
from .smtp_server import SmtpTestServer


def make_message(to: str = "ada@example.org", name: str | None = "Ada", title: str | None = None,
                 sid: int = 7, day: date = DAY) -> OutgoingMail:
    papers = [paper(i) for i in range(10)]
    if title is not None:
        papers[0] = paper(0, title=title, authors=('<img src=x onerror=alert(2)>',))
    ctx = make_context(papers, Subscriber(email=to, name=name, id=sid, link_key=LINK_KEY))
    r = render_digest(ctx)
    return build_mail(
        r, to_addr=to, to_name=name, from_addr="Papers Digest <digest@digest.example>",
        message_id=message_id(sid, day, "digest.example"),
        list_headers=ListHeaders("Papers Digest <digest.digest.example>", ctx.unsubscribe_url),
        date=datetime(2026, 8, 18, 6, 0, tzinfo=timezone.utc),
    )


@pytest.fixture
def server(smtp: SmtpTestServer) -> SmtpTestServer:
    """The test server answering as a real one would for a few addresses: 451 (later@) and 550 (bad@) on
    RCPT, 452 (full@) and 554 (reject@) on DATA."""
    smtp.rcpt.always.update({"later@example.org": "451 4.3.0 try again later",
                             "bad@example.org": "550 5.1.1 no such user"})
    smtp.data.always.update({"full@example.org": "452 4.2.2 mailbox full",
                             "reject@example.org": "554 5.7.1 message rejected as spam"})
    return smtp


# -- message -----------------------------------------------------------------------------------------


def test_message_id_is_deterministic() -> None:
    a = message_id(7, DAY, "digest.example")
    assert a == message_id(7, DAY, "digest.example")
    assert a.startswith("<digest-2026-08-18-s7-") and a.endswith("@digest.example>")
    assert a != message_id(8, DAY, "digest.example") != message_id(7, date(2026, 8, 19), "digest.example")
    with pytest.raises(ValueError):
        message_id(7, DAY, "evil>\r\nBcc: x@y")


def test_header_injection_is_impossible() -> None:
    msg = make_message(name="Ada\r\nBcc: victim@example.org", title="Hi\r\nBcc: victim@example.org")
    raw = msg.data
    assert b"\r\nBcc:" not in raw
    back = message_from_bytes(raw, policy=policy.default)
    assert back["Bcc"] is None and len(back.get_all("To", [])) == 1
    assert back["To"].addresses[0].addr_spec == "ada@example.org"
    with pytest.raises(ValueError):
        make_message(to="ada@example.org\r\nBcc: victim@example.org")


def test_smtp_round_trip_parses_back(server: SmtpTestServer) -> None:
    msg = make_message(title=HOSTILE_TITLE)
    with SmtpTransport(smtp_settings(server.port)) as t:
        t.send(msg)
    (received,) = server.messages
    assert received.mail_from == "digest@digest.example" and received.rcpt_tos == ("ada@example.org",)
    back = message_from_bytes(received.raw, policy=policy.default)
    assert back.get_content_type() == "multipart/alternative"
    text, html = back.iter_parts()
    assert text.get_content_type() == "text/plain" and html.get_content_type() == "text/html"
    assert back["From"] == "Papers Digest <digest@digest.example>"
    assert back["To"] == "Ada <ada@example.org>"
    assert back["Message-ID"] == message_id(7, DAY, "digest.example")
    assert back["Date"] == "Tue, 18 Aug 2026 06:00:00 +0000"
    assert back["List-Id"] == "Papers Digest <digest.digest.example>"
    assert back["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    lu = back["List-Unsubscribe"]
    # the HTTPS one-click only: a mailto: address would be advertised but never read (issue 11)
    assert lu.startswith("<https://digest.example/unsubscribe/") and lu.endswith(">") and lu.count("<") == 1
    assert "\n" not in lu and "mailto:" not in text.get_content() + html.get_content()
    subject = back["Subject"]
    assert "\n" not in subject and subject.startswith("Daily Papers, 2026-08-18: <script>")
    body = html.get_content()
    assert len(body.encode()) < HTML_LIMIT
    assert "<script" not in body.lower() and "<img" not in body.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body and "&lt;img src=x onerror=alert(2)&gt;" in body
    assert "Daily Papers, Tuesday, 18 August 2026" in text.get_content()


def test_one_connection_reused_for_20_messages(server: SmtpTestServer) -> None:
    before = server.connections
    with SmtpTransport(smtp_settings(server.port)) as t:
        for i in range(20):
            t.send(make_message(to=f"user{i}@example.org", sid=i))
        assert t.connections_opened == 1
    assert server.connections - before == 1
    assert len(server.messages) == 20


@pytest.mark.parametrize("to, refusal, code, detail", [
    ("later@example.org", TransientSendError, 451, "try again later"),  # on RCPT
    ("bad@example.org", PermanentSendError, 550, "no such user"),  # on RCPT: the address itself is refused
    ("full@example.org", TransientSendError, 452, "mailbox full"),  # on DATA
    ("reject@example.org", PermanentSendError, 554, "rejected as spam"),  # on DATA: the message, not the address
])
def test_refusals(server: SmtpTestServer, to: str, refusal: type[SendError], code: int, detail: str) -> None:
    with SmtpTransport(smtp_settings(server.port)) as t:
        with pytest.raises(refusal) as e:
            t.send(make_message(to=to))
        assert e.value.code == code and detail in e.value.detail
        assert getattr(e.value, "recipient_rejected", False) is (to == "bad@example.org")
        t.send(make_message())  # the connection is still usable
    assert len(server.messages) == 1


def test_connection_refused_is_transient() -> None:
    with SmtpTransport(smtp_settings(free_port())) as t:
        with pytest.raises(TransientSendError):
            t.send(make_message())


def test_stale_connection_is_reopened_transparently(server: SmtpTestServer) -> None:
    with SmtpTransport(smtp_settings(server.port)) as t:
        t.send(make_message(sid=1))
        server.mail.drop_next = 1  # the server drops the idle connection
        t.send(make_message(sid=2))
        assert t.connections_opened == 2
    assert len(server.messages) == 2


def test_drop_during_data_is_transient_then_reconnects(server: SmtpTestServer) -> None:
    with SmtpTransport(smtp_settings(server.port)) as t:
        t.send(make_message(sid=1))
        server.data.drop_next = 1
        with pytest.raises(TransientSendError):
            t.send(make_message(sid=2))
        t.send(make_message(sid=2))  # the re-send opens a new connection
        assert t.connections_opened == 2
    assert len(server.messages) == 2


def test_classify() -> None:
    assert isinstance(classify(smtplib.SMTPServerDisconnected("x")), TransientSendError)
    assert isinstance(classify(socket.timeout("t")), TransientSendError)
    assert isinstance(classify(ConnectionRefusedError()), TransientSendError)
    assert isinstance(classify(smtplib.SMTPConnectError(421, b"busy")), TransientSendError)
    s = classify(smtplib.SMTPSenderRefused(553, b"5.7.1 sender not allowed", "a@b"))
    assert isinstance(s, PermanentSendError) and not s.recipient_rejected
    r = classify(smtplib.SMTPRecipientsRefused({"a@b": (550, b"5.1.1 unknown")}))
    assert isinstance(r, PermanentSendError) and r.recipient_rejected and r.code == 550
    r = classify(smtplib.SMTPRecipientsRefused({"a@b": (554, b"5.7.1 blocked by policy")}))
    assert isinstance(r, PermanentSendError) and not r.recipient_rejected
    assert isinstance(classify(smtplib.SMTPDataError(451, b"later")), TransientSendError)


# -- files -------------------------------------------------------------------------------------------


def test_file_transport_writes_one_file_per_message_id(tmp_path: Path) -> None:
    t = make_transport(bare_settings(outbox_dir=str(tmp_path / "outbox")))
    assert isinstance(t, FileTransport)
    with t:
        t.send(make_message(sid=1))
        t.send(make_message(sid=1))  # a re-send after a crash
        t.send(make_message(sid=2))
    files = sorted((tmp_path / "outbox").iterdir())
    assert len(files) == 2 and all(f.suffix == ".eml" and not f.name.startswith(".") for f in files)
    back = message_from_bytes(files[0].read_bytes(), policy=policy.default)
    assert back["Message-ID"] in (message_id(1, DAY, "digest.example"), message_id(2, DAY, "digest.example"))
    assert [p.get_content_type() for p in back.iter_parts()] == ["text/plain", "text/html"]


def test_make_transport_smtp_when_host_set() -> None:
    assert isinstance(make_transport(smtp_settings(25)), SmtpTransport)


def test_non_ascii_name_and_subject_are_encoded() -> None:
    msg = make_message(name='Zoë "Z" Ünïcode, PhD', title="Diffusion — “quoted” ▲")
    raw = msg.data
    assert raw.isascii()
    back = message_from_bytes(raw, policy=policy.default)
    assert back["To"].addresses[0].display_name == 'Zoë "Z" Ünïcode, PhD'
    assert back["To"].addresses[0].addr_spec == "ada@example.org" and len(back["To"].addresses) == 1
    assert back["Subject"] == "Daily Papers, 2026-08-18: Diffusion — “quoted” ▲"


def test_a_second_recipient_cannot_be_smuggled_in() -> None:
    for bad in ("ada@example.org, eve@example.org", "Eve <eve@example.org>", "ada@example.org\nBcc: x@y"):
        with pytest.raises(ValueError):
            make_message(to=bad)
