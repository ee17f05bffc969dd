"""Whose fault a permanent SMTP refusal is: the recipient's (suppress the address), the message's (fail
this mail), or the server's (relay, auth, policy, no enhanced code: keep the row for a later try and never
suppress anyone). Replies are the ones real servers send."""

from __future__ import annotations

import smtplib

import pytest

from digest.mail import PermanentSendError, Refusal, classify


def rcpt(code: int, reply: str) -> PermanentSendError:
    err = classify(smtplib.SMTPRecipientsRefused({"a@example.org": (code, reply.encode())}))
    assert isinstance(err, PermanentSendError)
    return err


@pytest.mark.parametrize("code, reply, kind", [
    # the address itself: suppressed
    (550, "5.1.1 <a@example.org>: Recipient address rejected: User unknown in local recipient table",
     Refusal.recipient),
    (550, "5.1.1 The email account that you tried to reach does not exist.", Refusal.recipient),
    (553, "5.1.3 Bad recipient address syntax", Refusal.recipient),
    (550, "5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup", Refusal.recipient),
    (550, "5.2.1 The email account that you tried to reach is disabled.", Refusal.recipient),
    # the server's: relay, auth, policy, sender, or nothing that names the mailbox
    (550, "relay not permitted", Refusal.relay),  # Exim, no enhanced code
    (553, "sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)", Refusal.relay),  # qmail
    (554, "5.7.1 <a@example.org>: Relay access denied", Refusal.relay),  # Postfix
    (550, "5.7.1 <a@example.org>... Relaying denied", Refusal.relay),  # sendmail
    (550, "5.1.1 relaying denied for this recipient", Refusal.relay),  # relay wording beats the code
    (530, "5.7.0 Authentication required", Refusal.auth),
    (530, "Must issue a STARTTLS command first", Refusal.auth),
    (535, "5.7.8 Username and Password not accepted", Refusal.auth),
    (554, "5.7.1 Service unavailable; Client host [1.2.3.4] blocked using zen.spamhaus.org", Refusal.policy),
    (550, "5.7.1 Message rejected due to local policy", Refusal.policy),
    (550, "5.7.26 Unauthenticated email is not accepted from this domain", Refusal.policy),
    (553, "5.1.8 <digest@localhost>: Sender address rejected: Domain not found", Refusal.sender),
    (550, "no such user here", Refusal.server),  # no enhanced code: never enough to suppress
    (550, "Requested action not taken: mailbox unavailable", Refusal.server),
    (554, "5.0.0 Service unavailable", Refusal.server),
    (550, "5.1.0 Address rejected", Refusal.server),  # 5.1.0 names no mailbox (Postfix uses it for senders)
    # the message's: failed, not suppressed
    (552, "5.3.4 Message size exceeds fixed maximum message size", Refusal.message),
    (552, "5.2.2 The email account that you tried to reach is over quota.", Refusal.message),
])
def test_who_is_refused(code: int, reply: str, kind: Refusal) -> None:
    err = rcpt(code, reply)
    assert err.refusal is kind, f"{code} {reply}"
    assert err.recipient_rejected is (kind is Refusal.recipient)
    assert err.by_server is (kind in (Refusal.relay, Refusal.auth, Refusal.policy, Refusal.sender, Refusal.server))


def test_refusals_outside_rcpt_never_name_a_recipient() -> None:
    mail_from = classify(smtplib.SMTPSenderRefused(550, b"5.1.1 unknown", "digest@localhost"))
    assert isinstance(mail_from, PermanentSendError) and mail_from.refusal is Refusal.sender
    spam = classify(smtplib.SMTPDataError(554, b"5.7.1 message rejected as spam"))
    assert isinstance(spam, PermanentSendError) and spam.refusal is Refusal.policy and spam.by_server


def test_a_non_ascii_address_is_the_address_not_the_server() -> None:
    err = classify(UnicodeEncodeError("ascii", "zoë@example.org", 2, 3, "ordinal not in range(128)"))
    assert isinstance(err, PermanentSendError) and err.refusal is Refusal.address
    assert not err.recipient_rejected and not err.by_server
