"""Email to users through the transactional outbox: ``queue`` inside the transaction that
decides to write, ``deliver_due`` later from a leased job."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from zeropay.domain import bounds
from zeropay.domain.errors import ZeroPayError
from zeropay.services.context import AppContext
from zeropay.services.ports import Mailer, QueuedEmail, UnitOfWork

log = logging.getLogger("zeropay.mail")

ATTEMPTS_MAX = 8
RETRY_BASE_S = 30


def queue(ctx: AppContext, uow: UnitOfWork, *, user_id: str, subject: str, body: str) -> None:
    """Queue a message; its body is stored encrypted and bound to its row, since it may carry a
    one-time code. Never put a secret in an email that works on its own: a code works only in the
    flow that asked for it."""
    email_id = ctx.new_id("eml")
    ciphertext = ctx.keyring.encrypt(
        body.encode(), table="outbound_email", column="body", row_id=email_id, subject=user_id
    )
    uow.outbox.add(
        email_id=email_id,
        user_id=user_id,
        subject=subject,
        body_ciphertext=ciphertext,
        now=ctx.now(),
    )


def deliver_due(ctx: AppContext, *, batch: int = bounds.EMAIL_SEND_BATCH) -> int:
    """Send what is due; a failure is retried with doubling delays, then given up (and kept)."""
    if ctx.mailer is None:
        return 0
    mailer = ctx.mailer
    due: list[QueuedEmail] = ctx.run(lambda uow: uow.outbox.due(ctx.now(), limit=batch))
    sent = 0
    for email in due:
        error = _try_send(ctx, mailer, email)
        if error is None:
            _record(ctx, email, error=None, retry_at=None)
            sent += 1
            continue
        attempts = email.attempts + 1
        retry_at = (
            ctx.now() + timedelta(seconds=RETRY_BASE_S * 2 ** (attempts - 1))
            if attempts < ATTEMPTS_MAX
            else None
        )
        log.warning("email %s not sent (attempt %s): %s", email.id, attempts, error)
        _record(ctx, email, error=error, retry_at=retry_at)
    return sent


def _try_send(ctx: AppContext, mailer: Mailer, email: QueuedEmail) -> str | None:
    """None when sent; else why not."""

    def recipient(uow: UnitOfWork) -> bytes | None:
        user = uow.accounts.user(email.user_id)
        # A frozen account still hears from us (that it was frozen, a fresh "this wasn't me"
        # link); an erased one never does.
        reachable = user is not None and user.status in ("active", "frozen")
        return user.email_ciphertext if user is not None and reachable else None

    ciphertext = ctx.run(recipient)
    if ciphertext is None:
        return "the user is gone"
    try:
        address = ctx.keyring.decrypt(
            ciphertext, table="users", column="email", row_id=email.user_id
        ).decode()
        body = ctx.keyring.decrypt(
            email.body_ciphertext, table="outbound_email", column="body", row_id=email.id
        ).decode()
        mailer.send(to=address, subject=email.subject, body=body)
    except ZeroPayError as exc:
        return exc.message
    return None


def _record(
    ctx: AppContext, email: QueuedEmail, *, error: str | None, retry_at: datetime | None
) -> None:
    def work(uow: UnitOfWork) -> None:
        if error is None:
            uow.outbox.sent(email.id, ctx.now())
        else:
            uow.outbox.failed(email.id, error=error, retry_at=retry_at)

    ctx.run(work)
