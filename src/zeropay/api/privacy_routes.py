"""HTTP routes of the privacy center: what we hold about me and why (``GET /v1/me/privacy``),
all of it as a JSON archive (``GET /v1/me/export``, GDPR Art. 15 and 20), and erasing my account
(``DELETE /v1/me``, Art. 17). Secrets are named, never shown."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from zeropay.api.deps import Ctx, CurrentSession
from zeropay.api.render import ts
from zeropay.domain import bounds
from zeropay.services import privacy
from zeropay.services.ports import HIDDEN, HeldRows, InventoriedField

router = APIRouter()

EXPORT_FORMAT = "zeropay.export/1"


@router.get("/v1/me/privacy", tags=["payer"])
def my_privacy(ctx: Ctx, session: CurrentSession) -> dict[str, Any]:
    """Every field of the data inventory with what we hold of it for me: how many rows, and the
    values I may see (the first ``PRIVACY_VALUES_SHOWN_MAX``)."""
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
    return {"user_id": held.user_id, "at": ts(held.at), "fields": fields}


@router.get("/v1/me/export", tags=["payer"])
def my_export(ctx: Ctx, session: CurrentSession) -> JSONResponse:
    """Everything held about me, machine-readable: the inventory, then each table's rows."""
    held = privacy.mine(ctx, session)
    body = {
        "format": EXPORT_FORMAT,
        "user_id": held.user_id,
        "exported_at": ts(held.at),
        "inventory": [_field(f) for t in held.tables for f in t.fields],
        "data": {t.table: _rows(t) for t in held.tables},
    }
    name = f"zeropay-export-{held.user_id}.json"
    return JSONResponse(body, headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.delete("/v1/me", tags=["payer"])
def erase_me(ctx: Ctx, session: CurrentSession) -> dict[str, Any]:
    """Erase my account. Needs a strong sign-in in the last ``recent_auth_s`` (5 minutes by
    default); the session ends with it. Says what is kept, why and until when."""
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
