"""HTTP routes for payment instruments and their tokens: the payer adds, lists and removes
instruments, gives merchants tokens and provisions device cryptogram keys; the merchant charges a
token. No answer ever carries a number: the payer sees a display form, the merchant a token.

``{token}`` in a payer's path is the instrument's token, or its ``id`` from the list (for a
wallet that no longer holds the token). Another payer's token is "not found", as is an unknown
one.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Header, Request, Response
from fastapi.responses import JSONResponse
from pydantic import Field, StrictInt, StrictStr

from zeropay.api.deps import Ctx, CurrentMerchant, CurrentSession, idempotent_request
from zeropay.api.problems import problem_body, render_error
from zeropay.api.render import ts
from zeropay.api.schemas import MoneyIn, Strict
from zeropay.domain import bounds
from zeropay.domain.errors import InfrastructureError
from zeropay.domain.instruments import (
    Charge,
    ChargeStatus,
    DeviceKey,
    parse_card,
    parse_counter,
    parse_cryptogram,
)
from zeropay.domain.money import parse_money
from zeropay.domain.recovery import Restricted
from zeropay.services import charges, instruments, recovery
from zeropay.services import idempotency as idem
from zeropay.services.context import urlsafe
from zeropay.services.instruments import GrantView, InstrumentView
from zeropay.services.ports import FundingGateway

router = APIRouter()
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]


def get_funding(request: Request) -> FundingGateway:
    gateway: FundingGateway | None = request.app.state.container.funding
    if gateway is None:
        raise InfrastructureError("no funding gateway is configured")
    return gateway


Funding = Annotated[FundingGateway, Depends(get_funding)]


# Numbers are checked by the domain (``instrument_invalid`` with a field and a reason); the body
# limit bounds what is read.
class CardCreate(Strict):
    kind: Literal["card"]
    number: StrictStr
    exp_month: StrictInt
    exp_year: StrictInt


class CarrierCreate(Strict):
    kind: Literal["carrier"]
    phone: StrictStr
    region: StrictStr | None = None


InstrumentCreate = Annotated[CardCreate | CarrierCreate, Body(discriminator="kind")]


class GrantCreate(Strict):
    merchant_id: StrictStr = Field(max_length=bounds.ID_LENGTH_MAX)


class ChargeCreate(MoneyIn):
    token: StrictStr = Field(max_length=bounds.TOKEN_LENGTH_MAX)
    counter: StrictInt
    cryptogram: StrictStr = Field(max_length=64)


def _instrument(view: InstrumentView) -> dict[str, Any]:
    i = view.instrument
    return {
        "id": i.id,
        "object": "payment_instrument",
        "kind": i.kind.value,
        "display": view.display,
        "brand": i.brand,
        "exp_month": i.expiry.month if i.expiry else None,
        "exp_year": i.expiry.year if i.expiry else None,
        "created_at": ts(i.created_at),
    }


def _grant(view: GrantView) -> dict[str, Any]:
    g = view.grant
    return {
        "id": g.id,
        "object": "merchant_token",
        "merchant_id": g.merchant_id,
        "merchant_name": view.merchant_name,
        "created_at": ts(g.created_at),
    }


def _device_key(k: DeviceKey) -> dict[str, Any]:
    return {
        "id": k.id,
        "object": "device_key",
        "device_id": k.device_id,
        "last_counter": k.last_counter,
        "locked": k.lockout.locked_permanently or k.lockout.locked_until is not None,
        "locked_until": ts(k.lockout.locked_until),
        "created_at": ts(k.created_at),
        "last_used_at": ts(k.last_used_at),
    }


def _charge(c: Charge) -> dict[str, Any]:
    return {
        "id": c.id,
        "object": "charge",
        "status": c.status.value,
        "amount": c.amount.amount_minor,
        "currency": c.amount.currency.code,
        "counter": c.counter,
        "kind": c.kind.value,
        "decline_code": c.decline_code,
        "created_at": ts(c.created_at),
    }


# ---- payer ------------------------------------------------------------------------------------


@router.post("/v1/me/instruments", status_code=201, tags=["payer"])
def add_instrument(ctx: Ctx, session: CurrentSession, body: InstrumentCreate) -> dict[str, Any]:
    """Add a card (``number``, 13-19 digits, spaces and dashes allowed; ``exp_month``,
    ``exp_year``) or a mobile number for carrier billing (``phone``, and ``region`` when it is
    national). The answer carries the instrument's ``token``, shown this once."""
    recovery.check(ctx, session, Restricted.ADD_INSTRUMENT)
    if isinstance(body, CardCreate):
        new = parse_card(body.number, body.exp_month, body.exp_year, now=ctx.now())
    else:
        new = instruments.parse_carrier(body.phone, body.region)
    added = instruments.add(ctx, user_id=session.user_id, new=new)
    view = InstrumentView(instrument=added.instrument, display=added.display)
    return {**_instrument(view), "token": added.token}


@router.get("/v1/me/instruments", tags=["payer"])
def list_instruments(ctx: Ctx, session: CurrentSession) -> dict[str, Any]:
    rows = instruments.list_instruments(ctx, user_id=session.user_id)
    return {"data": [_instrument(v) for v in rows]}


@router.get("/v1/me/instruments/{token}", tags=["payer"])
def get_instrument(ctx: Ctx, session: CurrentSession, token: str) -> dict[str, Any]:
    """The instrument, the merchants holding a token for it and its devices' payment keys."""
    found = instruments.detail(ctx, user_id=session.user_id, ref=token)
    return {
        **_instrument(found.view),
        "merchant_tokens": [_grant(g) for g in found.grants],
        "device_keys": [_device_key(k) for k in found.device_keys],
    }


@router.delete("/v1/me/instruments/{token}", status_code=204, tags=["payer"])
def remove_instrument(ctx: Ctx, session: CurrentSession, token: str) -> Response:
    instruments.remove(ctx, user_id=session.user_id, ref=token)
    return Response(status_code=204)


@router.post("/v1/me/instruments/{token}/grants", status_code=201, tags=["payer"])
def grant_merchant(
    ctx: Ctx, session: CurrentSession, token: str, body: GrantCreate
) -> dict[str, Any]:
    """Give a merchant a token for this instrument (card on file), usable by that merchant
    only. Needs a strong sign-in in the last few minutes. The ``token`` is shown this once."""
    issued = instruments.grant(ctx, session, ref=token, merchant_id=body.merchant_id)
    return {
        **_grant(issued.view),
        "instrument_id": issued.view.grant.instrument_id,
        "token": issued.token,
    }


@router.delete("/v1/me/instruments/{token}/grants/{grant_id}", status_code=204, tags=["payer"])
def revoke_grant(ctx: Ctx, session: CurrentSession, token: str, grant_id: str) -> Response:
    instruments.revoke_grant(ctx, user_id=session.user_id, ref=token, grant_id=grant_id)
    return Response(status_code=204)


@router.post("/v1/me/instruments/{token}/devices", status_code=201, tags=["payer"])
def provision_device(ctx: Ctx, session: CurrentSession, token: str) -> dict[str, Any]:
    """From a bound device (its DPoP session): a 256-bit cryptogram key for this instrument on
    this device, shown this once. Each charge carries HMAC-SHA256 under it over the canonical
    use (token, amount, currency, merchant, counter); see ``domain.instruments``."""
    made = instruments.provision_device(ctx, session, ref=token)
    return {
        **_device_key(made.key),
        "key": urlsafe(made.secret),
        "algorithm": "HMAC-SHA256",
        "format": "zeropay-cryptogram-v1",
    }


# ---- merchant ---------------------------------------------------------------------------------


def _charge_answer(c: Charge) -> tuple[int, dict[str, Any]]:
    if c.status is ChargeStatus.SUCCEEDED:
        return 201, _charge(c)
    # Declined: recorded, no money moved. A problem like every refusal, naming the charge.
    return 402, problem_body(
        402,
        "funding_declined",
        "the funding source declined the charge",
        reason=c.decline_code,
        charge=_charge(c),
    )


@router.post("/v1/charges", status_code=201, tags=["merchant"])
def create_charge(
    ctx: Ctx,
    request: Request,
    merchant: CurrentMerchant,
    funding: Funding,
    body: ChargeCreate,
    key: IdempotencyKey = None,
) -> JSONResponse:
    """Charge a merchant token (``mtok_...``) with the payer device's one-time ``cryptogram``
    for exactly this ``amount``, ``currency``, this merchant and ``counter``. 201 with the
    charge; 402 ``funding_declined`` (the charge is recorded, no money moved); 403
    ``cryptogram_invalid``; 404 for a token that is not this merchant's."""
    merchant.require("payments:write")
    amount = parse_money(body.amount, body.currency)
    counter = parse_counter(body.counter)
    cryptogram = parse_cryptogram(body.cryptogram)
    answer = idem.run(
        ctx,
        idempotent_request(request, merchant.merchant_id, key, body.model_dump()),
        lambda hook: charges.charge(
            ctx,
            funding,
            merchant_id=merchant.merchant_id,
            token=body.token,
            amount=amount,
            counter=counter,
            cryptogram=cryptogram,
            on_commit=hook,
        ),
        render=_charge_answer,
        render_error=render_error,
    )
    headers = {"Idempotent-Replayed": "true"} if answer.replayed else None
    media = "application/problem+json" if answer.status >= 400 else "application/json"
    return JSONResponse(answer.body, status_code=answer.status, headers=headers, media_type=media)


@router.get("/v1/charges/{charge_id}", tags=["merchant"])
def get_charge(ctx: Ctx, merchant: CurrentMerchant, charge_id: str) -> dict[str, Any]:
    merchant.require("payments:read")
    return _charge(charges.get(ctx, merchant_id=merchant.merchant_id, charge_id=charge_id))
