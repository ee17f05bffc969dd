"""Mail: one road to the wire. ``message`` builds every mail (digests and confirmations) with the same
header guards into an ``OutgoingMail``; ``transports`` delivers it (SMTP, or ``.eml`` files); ``errors``
says whether a failure is worth another try."""

from digest.mail.errors import PermanentSendError, Refusal, SendError, TransientSendError, classify
from digest.mail.message import POLICY, ListHeaders, OutgoingMail, build_mail, message_id
from digest.mail.transports import FileTransport, SmtpTransport, Transport, make_transport

__all__ = [
    "POLICY", "FileTransport", "ListHeaders", "OutgoingMail", "PermanentSendError", "Refusal", "SendError", "SmtpTransport",
    "Transport", "TransientSendError", "build_mail", "classify", "make_transport", "message_id",
]
