"""HTTP routes of the privacy center: what we hold about me and why (``GET /v1/me/privacy``),
all of it as a JSON archive (``GET /v1/me/export``, GDPR Art. 15 and 20), erasing my account
(``DELETE /v1/me``, Art. 17), and which signals the risk engine may use about me
(``GET``/``PUT /v1/me/consents``). Secrets are named, never shown."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse

from zeropay.api.deps import Ctx, CurrentSession
from zeropay.api.render import ts
from zeropay.domain import bounds
from zeropay.domain.consents import SIGNAL_GROUPS
from zeropay.domain.recovery import Restricted
from zeropay.services import consents, privacy, recovery
from zeropay.services.ports import HIDDEN, HeldRows, InventoriedField

router = APIRouter()

EXPORT_FORMAT = "zeropay.export/1"


@router.get("/v1/me/privacy", tags=["payer"])
def my_privacy(ctx: Ctx, session: CurrentSession) -> dict[str, Any]:
    """Every field of the data inventory with what we hold of it for me: how many rows, and the
    values I may see (the first ``PRIVACY_VALUES_SHOWN_MAX``)."""
    recovery.check(ctx, session, Restricted.EXPORT)  # the same data as the archive
    held = privacy.mine(ctx, session)
    fields = []
    for table in held.tables:
        for i, field in enumerate(table.fields):
            values = [row[i] for row in table.rows if row[i] is not None]
            entry = _field(field) | {"held": {"rows": len(values), "more": table.truncated}}
            if values and field.shown:
                entry["held"]["values"] = [
                    _json(v) for v in values[: bounds.PRIVACY_VALUES_SHOWN_MAX]
                ]
            elif values:
                entry["held"]["shown"] = HIDDEN
            fields.append(entry)
    return {
        "user_id": held.user_id,
        "at": ts(held.at),
        "fields": fields,
        "consents": _consents(consents.mine(ctx, session)),
    }


@router.get("/v1/me/export", tags=["payer"])
def my_export(ctx: Ctx, session: CurrentSession) -> JSONResponse:
    """Everything held about me, machine-readable: the inventory, then each table's rows."""
    recovery.check(ctx, session, Restricted.EXPORT)
    held = privacy.mine(ctx, session)
    body = {
        "format": EXPORT_FORMAT,
        "user_id": held.user_id,
        "exported_at": ts(held.at),
        "inventory": [_field(f) for t in held.tables for f in t.fields],
        "data": {t.table: _rows(t) for t in held.tables},
        "consents": _consents(consents.mine(ctx, session)),
    }
    name = f"zeropay-export-{held.user_id}.json"
    return JSONResponse(body, headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.delete("/v1/me", tags=["payer"])
def erase_me(ctx: Ctx, session: CurrentSession) -> dict[str, Any]:
    """Erase my account. Needs a strong sign-in in the last ``recent_auth_s`` (5 minutes by
    default); the session ends with it. Says what is kept, why and until when."""
    recovery.check(ctx, session, Restricted.ERASE)
    done = privacy.erase_me(ctx, session)
    return {
        "user_id": done.erasure.user_id,
        "erased_at": ts(done.erasure.erased_at),
        "email_retained_until": ts(done.erasure.retained_until),
        "kept": [
            {
                "table": k.table.table,
                "fields": list(k.fields),
                "rows": len(k.table.rows),
                "purpose": k.table.fields[0].purpose,
                "legal_basis": k.table.fields[0].basis,
                "retention": k.table.fields[0].retention,
            }
            for k in done.kept
        ],
    }


@router.get("/v1/me/consents", tags=["payer"])
def my_consents(ctx: Ctx, session: CurrentSession) -> dict[str, Any]:
    """Which signal groups the risk engine may use about me, what each holds, and the security
    signals it always uses."""
    return _consents(consents.mine(ctx, session))


@router.put("/v1/me/consents", tags=["payer"])
def change_my_consents(
    ctx: Ctx,
    session: CurrentSession,
    body: Annotated[
        Any,
        Body(
            description="One or both groups, true (use) or false (withhold)",
            examples=[{"location": False, "behaviour": True}],
        ),
    ],
) -> dict[str, Any]:
    """Give or withhold ``location`` and ``behaviour``. Withholding needs a strong sign-in in the
    last ``recent_auth_s`` (403 ``recent_auth_required``); a body that is not groups to true or
    false is refused with 422 ``consents_invalid`` and a ``reason``."""
    return _consents(consents.change(ctx, session, body))


def _consents(made: consents.ConsentsView) -> dict[str, Any]:
    return {
        "user_id": made.user_id,
        "consents": {
            group.value: {
                "given": c.given,
                "changed_at": ts(c.changed_at) if c.changed_at is not None else None,
                "signals": sorted(SIGNAL_GROUPS[group]),
            }
            for group, c in made.consents.items()
        },
        # Never withheld: they protect the account and profile nobody.
        "always_used": sorted(SIGNAL_GROUPS[None]),
    }


def _field(f: InventoriedField) -> dict[str, Any]:
    return {
        "field": f"{f.table}.{f.column}",
        "name": f.name,
        "purpose": f.purpose,
        "legal_basis": f.basis,
        "encrypted": f.encrypted,
        "retention": f.retention,
        "retention_setting": f.setting,
        "shown": f.shown,
    }


def _rows(table: HeldRows) -> dict[str, Any]:
    columns = [f.column for f in table.fields]
    return {
        "rows": [{c: _json(v) for c, v in zip(columns, row, strict=True)} for row in table.rows],
        "truncated": table.truncated,
    }


def _json(value: object) -> Any:
    if isinstance(value, datetime):
        return ts(value)
    if isinstance(value, bytes | memoryview):
        return base64.urlsafe_b64encode(bytes(value)).rstrip(b"=").decode()
    return value
