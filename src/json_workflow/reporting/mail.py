"""Sending email: one multipart/alternative message over SMTP, TLS always verified."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from json_workflow.errors import MailError
from json_workflow.settings import Email


def message(email: Email, subject: str, text: str, html: str | None = None) -> EmailMessage:
    """A message with a plain-text part and, when given, an HTML alternative."""
    msg = EmailMessage()
    msg["Subject"] = f"{email.subject_prefix}{subject}"
    msg["From"] = email.sender
    msg["To"] = ", ".join(email.recipients)
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain=email.sender.rpartition("@")[2] or None)
    msg.set_content(text)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    return msg


def send(email: Email, msg: EmailMessage) -> None:
    """Deliver `msg` through the configured server; MailError with the server's answer when it fails."""
    where = f"{email.smtp_host}:{email.smtp_port}"
    # Python 3.11's starttls() without a context does not check the certificate: always pass one.
    context = ssl.create_default_context(cafile=email.ca_file or None)
    try:
        client: smtplib.SMTP
        if email.ssl:
            client = smtplib.SMTP_SSL(email.smtp_host, email.smtp_port, timeout=email.timeout_seconds, context=context)
        else:
            client = smtplib.SMTP(email.smtp_host, email.smtp_port, timeout=email.timeout_seconds)
        with client:
            if email.starttls:
                client.starttls(context=context)
            if email.username:
                client.login(email.username, email.password() or "")
            refused = client.send_message(msg)
    except smtplib.SMTPResponseException as e:
        answer = e.smtp_error.decode(errors="replace") if isinstance(e.smtp_error, bytes) else str(e.smtp_error)
        raise MailError(f"{where} answered {e.smtp_code} {answer}") from None
    except smtplib.SMTPRecipientsRefused as e:
        raise MailError(f"{where} refused every recipient: {_answers(e.recipients)}") from None
    except (smtplib.SMTPException, OSError) as e:
        raise MailError(f"cannot send through {where}: {e}") from None
    if refused:
        raise MailError(f"{where} refused some recipients: {_answers(refused)}")


def _answers(refused: dict) -> str:
    return "; ".join(
        f"{who}: {code} {text.decode(errors='replace') if isinstance(text, bytes) else text}"
        for who, (code, text) in refused.items()
    )
