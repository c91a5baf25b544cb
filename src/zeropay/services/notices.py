"""Security notifications: the in-app inbox every bound device reads, and email.

Sent on a new device, a factor added or removed, a password change and a lockout (OWASP ASVS
2.2.3; NIST 800-63B §6.1.2.2: notify on a separate channel). Messages carry no secret.
"""

from __future__ import annotations

from zeropay.services import mail
from zeropay.services.context import AppContext, UnitOfWork


def alert(
    ctx: AppContext, uow: UnitOfWork, *, user_id: str, kind: str, subject: str, body: str
) -> None:
    uow.accounts.notify(
        notification_id=ctx.new_id("ntf"), user_id=user_id, kind=kind, body=body, now=ctx.now()
    )
    mail.queue(ctx, uow, user_id=user_id, subject=subject, body=body)
