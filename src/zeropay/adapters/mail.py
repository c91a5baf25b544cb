"""Mail: an SMTP client (stdlib ``smtplib``) and, for development, a local SMTP server that
keeps every message it receives as a file (``aiosmtpd``), so the demo works offline."""

from __future__ import annotations

import smtplib
import ssl
import time
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

from zeropay.domain.errors import InfrastructureError

SMTP_TIMEOUT_S = 10


class SmtpMailer:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        starttls: bool = False,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.host, self.port, self.sender = host, port, sender
        self.starttls, self.username, self._password = starttls, username, password

    def send(self, *, to: str, subject: str, body: str) -> None:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = to
        message["Subject"] = subject
        message["Message-ID"] = make_msgid(domain=self.sender.rpartition("@")[2] or None)
        message.set_content(body)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=SMTP_TIMEOUT_S) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.username:
                    smtp.login(self.username, self._password or "")
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            raise InfrastructureError(f"SMTP delivery failed: {type(exc).__name__}") from exc

    def __repr__(self) -> str:  # never the password
        return f"SmtpMailer({self.host}:{self.port}, starttls={self.starttls})"


class MaildirHandler:
    """aiosmtpd handler that writes each message to ``directory`` as an .eml file."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        name = f"{time.time_ns()}.eml"
        (self.directory / name).write_bytes(envelope.original_content or envelope.content)
        return "250 Message accepted for delivery"


def run_dev_mail_server(*, host: str, port: int, directory: Path) -> None:
    """Serve SMTP until interrupted (``zeropay devmail``)."""
    from aiosmtpd.controller import Controller

    controller = Controller(MaildirHandler(directory), hostname=host, port=port)
    controller.start()
    print(f"development SMTP server on {host}:{port}, keeping mail in {directory}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()
