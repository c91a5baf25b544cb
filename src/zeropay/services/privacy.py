"""The privacy center: what the platform holds about the signed-in user (GDPR Art. 13-15), the
machine-readable export of it (Art. 15, 20), and erasure at the user's request (Art. 17).

What is personal data, why it is kept and for how long is the data inventory
(``adapters.sql.inventory``); the ``PrivacyStore`` reads the user's rows of every table in it.
A secret (a hash, a seed, a card number, a token) never leaves its row: the store hands back
``HIDDEN`` in its place. A ciphertext is opened here only when it is sealed under this user's
own key; anything sealed for someone else or under a platform key stays ``HIDDEN`` too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime

from zeropay.domain import bounds
from zeropay.domain.sessions import Session, require_recent_auth
from zeropay.services import erasure
from zeropay.services.context import AppContext
from zeropay.services.ports import HIDDEN, HeldRows, Sealed


@dataclass(frozen=True)
class Holdings:
    user_id: str
    at: datetime
    tables: tuple[HeldRows, ...]  # every ``Sealed`` value opened, or ``HIDDEN``


def holdings(ctx: AppContext, user_id: str, *, rows_max: int) -> Holdings:
    """Everything inventoried that belongs to ``user_id``, at most ``rows_max`` rows a table."""
    held = ctx.read(lambda uow: uow.privacy.held(user_id, rows_max=rows_max))
    opened = tuple(
        replace(h, rows=tuple(tuple(_open(ctx, user_id, v) for v in row) for row in h.rows))
        for h in held
    )
    return Holdings(user_id, ctx.now(), opened)


def mine(ctx: AppContext, session: Session) -> Holdings:
    """The privacy page and the archive (GDPR Art. 15, 20): every row, up to a bound the tables
    say they reached."""
    return holdings(ctx, session.user_id, rows_max=bounds.EXPORT_ROWS_PER_TABLE_MAX)


@dataclass(frozen=True)
class Kept:
    """What is still held after erasure, table by table: the fields with a value that survived
    the crypto-shredding (sealed under another key, or never encrypted)."""

    table: HeldRows  # its rows, values not opened
    fields: tuple[str, ...]  # the inventory's names of the fields still holding a value


@dataclass(frozen=True)
class ErasedAccount:
    erasure: erasure.Erasure
    kept: tuple[Kept, ...]


def erase_me(ctx: AppContext, session: Session) -> ErasedAccount:
    """Erasure at the user's request: only after a strong sign-in within ``recent_auth_s`` (an
    unlocked phone left on a table must not erase an account), then as an operator would erase
    the user; the audit log names the system, never the user whose key goes. The answer says
    what is kept, read from the database after the erasure rather than promised."""
    require_recent_auth(session, ctx.now(), ctx.policy.recent_auth_s)
    done = erasure.erase_user(ctx, session.user_id, by=session.user_id)
    left = ctx.read(
        lambda uow: uow.privacy.held(session.user_id, rows_max=bounds.EXPORT_ROWS_PER_TABLE_MAX)
    )
    kept = []
    for held in left:
        names = tuple(
            f.name
            for i, f in enumerate(held.fields)
            if (f.table, f.column) not in erasure.REPLACED
            and any(_survives(row[i], session.user_id) for row in held.rows)
        )
        if names:
            kept.append(Kept(held, names))
    return ErasedAccount(done, tuple(kept))


def _survives(value: object, user_id: str) -> bool:
    """A value outlives erasure unless it is gone or sealed under the user's destroyed key."""
    if value is None:
        return False
    return not (isinstance(value, Sealed) and value.subject == user_id)


def _open(ctx: AppContext, user_id: str, value: object) -> object:
    if not isinstance(value, Sealed):
        return value
    if value.subject != user_id:
        return HIDDEN
    plain = ctx.keyring.decrypt(
        value.ciphertext,
        table=value.table,
        column=value.column,
        row_id=value.row_id,
        subject=value.subject,
    )
    # Security question choices are padded with NULs to one length (services.questions).
    text = plain.rstrip(b"\0").decode("utf-8", errors="replace")
    if text[:1] in ("{", "["):  # audit entries' data is JSON
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text
