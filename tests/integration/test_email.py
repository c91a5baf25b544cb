"""Email over real SMTP (a local aiosmtpd server): lockout alerts reach the user's inbox through
the outbox, a failing server is retried later, and nothing is sent twice."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import replace
from email import message_from_bytes

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import text

from zeropay.adapters.mail import SmtpMailer
from zeropay.adapters.passwords import Argon2PasswordHasher
from zeropay.bootstrap import Container, build
from zeropay.services import mail


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        self.messages.append((list(envelope.rcpt_tos), envelope.original_content))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


class Relay:
    """A mailer whose SMTP server a test can point elsewhere (to a closed port, say)."""

    def __init__(self, port: int) -> None:
        self.port = port

    def send(self, *, to: str, subject: str, body: str) -> None:
        sender = "ZeroPay <no-reply@zeropay.test>"
        SmtpMailer(host="127.0.0.1", port=self.port, sender=sender).send(
            to=to, subject=subject, body=body
        )


@pytest.fixture
def relay(smtp) -> Relay:
    return Relay(smtp[1])


@pytest.fixture
def container(settings, clock, relay) -> Iterator[Container]:
    """This module's container sends mail through ``relay``."""
    built = build(
        settings,
        clock=clock,
        hasher=Argon2PasswordHasher.cheap_for_tests(),
        mailer=relay,
    )
    yield built
    built.engine.dispose()


def _signed_up(api, container, inbox, email: str) -> None:
    """A payer whose sign-up code was delivered, so only later mail is left to look at."""
    api.payer(email)
    assert mail.deliver_due(container.ctx) == 1
    [(recipients, raw)] = inbox.messages
    assert recipients == [email] and message_from_bytes(raw)["Subject"] == "ZeroPay: your code"
    inbox.messages.clear()


def _lock_out(api, email: str) -> None:
    for _ in range(5):
        r = api.client.post("/v1/sessions", json={"email": email, "password": "wrong-guess"})
        assert r.status_code == 401


def test_a_lockout_alert_is_emailed_once_to_the_account_address(api, container, smtp):
    inbox, _ = smtp
    _signed_up(api, container, inbox, "locked.out@example.com")
    _lock_out(api, "locked.out@example.com")
    assert inbox.messages == []  # queued with the lock, not sent inside the transaction
    assert mail.deliver_due(container.ctx) == 1
    assert mail.deliver_due(container.ctx) == 0
    [(recipients, raw)] = inbox.messages
    message = message_from_bytes(raw)
    assert recipients == ["locked.out@example.com"]
    assert message["Subject"] == "ZeroPay: a sign-in method is locked for now"
    assert "locked after 5 failed sign-in attempts" in message.get_payload(decode=True).decode()


def test_an_unreachable_mail_server_is_retried_later_with_back_off(
    api, container, clock, smtp, relay
):
    inbox, port = smtp
    _signed_up(api, container, inbox, "patient@example.com")
    _lock_out(api, "patient@example.com")
    relay.port = _free_port()  # nothing listens there
    assert mail.deliver_due(container.ctx) == 0
    with container.engine.connect() as c:
        attempts, error = c.execute(
            text("SELECT attempts, last_error FROM outbound_email WHERE sent_at IS NULL")
        ).one()
    assert attempts == 1 and "SMTP delivery failed" in error
    relay.port = port
    assert mail.deliver_due(container.ctx) == 0  # not due yet: the retry waits 30 s
    clock.advance(seconds=31)
    assert mail.deliver_due(container.ctx) == 1
    assert len(inbox.messages) == 1


def test_without_a_mail_server_configured_messages_wait_in_the_outbox(api, container, smtp):
    _signed_up(api, container, smtp[0], "queued@example.com")
    _lock_out(api, "queued@example.com")
    unconfigured = replace(container.ctx, mailer=None)
    assert mail.deliver_due(unconfigured) == 0
    with container.engine.connect() as c:
        assert (
            c.execute(
                text("SELECT count(*) FROM outbound_email WHERE sent_at IS NULL")
            ).scalar_one()
            == 1
        )


def test_the_development_mail_server_keeps_mail_and_the_dev_page_shows_it(
    container, tmp_path, api_for
):
    from zeropay.adapters.mail import MaildirHandler

    port = _free_port()
    controller = Controller(MaildirHandler(tmp_path / "mail"), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        SmtpMailer(host="127.0.0.1", port=port, sender="z@zeropay.test").send(
            to="dev@example.com", subject="hello", body="a body"
        )
    finally:
        controller.stop()
    dev = Container(
        replace(container.settings, dev_mail_dir=tmp_path / "mail"), container.engine, container.ctx
    )
    shown = api_for(dev).client.get("/dev/mail").json()["data"]
    assert [(m["to"], m["subject"], m["body"].strip()) for m in shown] == [
        ("dev@example.com", "hello", "a body")
    ]
    assert api_for(container).client.get("/dev/mail").status_code == 404  # off unless configured
