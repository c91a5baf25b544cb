"""HTTP routes for merchants' webhooks: endpoints and their secrets, the events, the delivery
log and redelivery. Every route authenticates an API key and names the scope it needs; the
services scope every read and write to the key's merchant (another merchant's endpoint, event
or delivery is "not found")."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import Field, StrictStr

from zeropay.api.deps import Ctx, CurrentMerchant
from zeropay.api.render import ts
from zeropay.api.schemas import Strict
from zeropay.domain import bounds
from zeropay.domain.webhooks import Attempt, DeliveryState, Endpoint, SecretPeriod
from zeropay.services import webhooks
from zeropay.services.ports import PaymentEventRecord
from zeropay.services.webhooks import DeliveryView

router = APIRouter(tags=["webhooks"])
PAGE = Annotated[int, Query(ge=1, le=bounds.PAGE_SIZE_MAX)]
Cursor = Annotated[str | None, Query(max_length=bounds.ID_LENGTH_MAX)]
MANAGE = "webhooks:manage"


class EndpointCreate(Strict):
    # Checked by the service (domain.webhooks.parse_url): refused with webhook_url_refused and a
    # stable reason. The body limit bounds what is read.
    url: StrictStr


class RotationCreate(Strict):
    # Checked by the service (domain.webhooks.parse_overlap_s): a whole number of seconds from
    # 0 to 604800, refused with invalid_overlap; absent, 86400.
    overlap_s: Any = None


class RedeliveryCreate(Strict):
    event_id: StrictStr = Field(max_length=bounds.ID_LENGTH_MAX)


def _endpoint(e: Endpoint) -> dict[str, Any]:
    return {
        "id": e.id,
        "object": "webhook_endpoint",
        "url": e.url,
        "status": e.status.value,
        "created_at": ts(e.created_at),
        "disabled_at": ts(e.disabled_at),
    }


def _secret(p: SecretPeriod) -> dict[str, Any]:
    return {"id": p.id, "created_at": ts(p.created_at), "expires_at": ts(p.expires_at)}


def _attempt(a: Attempt) -> dict[str, Any]:
    return {
        "attempt": a.attempt,
        "at": ts(a.started_at),
        "duration_ms": a.duration_ms,
        "status_code": a.status_code,
        "error": a.error,
    }


def _delivery(view: DeliveryView) -> dict[str, Any]:
    d = view.delivery
    return {
        "id": d.id,
        "object": "webhook_delivery",
        "event_id": d.event_id,
        "event_type": d.event_type,
        "endpoint_id": d.endpoint_id,
        "state": d.state.value,
        "attempts": d.attempts,
        "next_attempt_at": ts(d.next_attempt_at) if d.state is DeliveryState.PENDING else None,
        "created_at": ts(d.created_at),
        "finished_at": ts(d.finished_at),
        "log": [_attempt(a) for a in view.attempts],
    }


def _event(e: PaymentEventRecord) -> dict[str, Any]:
    return {"object": "event", **webhooks.event_body(e), "payment_id": e.payment_id}


@router.post("/v1/webhook-endpoints", status_code=201)
def create_endpoint(ctx: Ctx, merchant: CurrentMerchant, body: EndpointCreate) -> dict[str, Any]:
    """Add an endpoint. The answer carries its signing ``secret``, shown this once."""
    merchant.require(MANAGE)
    created = webhooks.create_endpoint(
        ctx, merchant_id=merchant.merchant_id, url=body.url, actor=merchant.key_id
    )
    return {
        **_endpoint(created.endpoint),
        "secret": created.secret,
        "secret_id": created.secret_id,
    }


@router.get("/v1/webhook-endpoints")
def list_endpoints(
    ctx: Ctx, merchant: CurrentMerchant, limit: PAGE = 20, starting_after: Cursor = None
) -> dict[str, Any]:
    """The merchant's endpoints, newest first (disabled ones too)."""
    merchant.require(MANAGE)
    rows = webhooks.list_endpoints(
        ctx, merchant_id=merchant.merchant_id, limit=limit, starting_after=starting_after
    )
    return {"data": [_endpoint(e) for e in rows], "has_more": len(rows) == limit}


@router.get("/v1/webhook-endpoints/{endpoint_id}")
def get_endpoint(ctx: Ctx, merchant: CurrentMerchant, endpoint_id: str) -> dict[str, Any]:
    """One endpoint and its signing secrets' periods (never their values)."""
    merchant.require(MANAGE)
    view = webhooks.get_endpoint(ctx, merchant_id=merchant.merchant_id, endpoint_id=endpoint_id)
    return {**_endpoint(view.endpoint), "secrets": [_secret(p) for p in view.secrets]}


@router.delete("/v1/webhook-endpoints/{endpoint_id}")
def disable_endpoint(ctx: Ctx, merchant: CurrentMerchant, endpoint_id: str) -> dict[str, Any]:
    """Disable the endpoint: nothing more is sent to it; its log stays."""
    merchant.require(MANAGE)
    endpoint = webhooks.disable_endpoint(
        ctx, merchant_id=merchant.merchant_id, endpoint_id=endpoint_id, actor=merchant.key_id
    )
    return _endpoint(endpoint)


@router.post("/v1/webhook-endpoints/{endpoint_id}/secret-rotations", status_code=201)
def rotate_secret(
    ctx: Ctx, merchant: CurrentMerchant, endpoint_id: str, body: RotationCreate
) -> dict[str, Any]:
    """A new signing secret, shown this once; the old ones sign too until ``expires_at``."""
    merchant.require(MANAGE)
    rotated = webhooks.rotate_secret(
        ctx,
        merchant_id=merchant.merchant_id,
        endpoint_id=endpoint_id,
        overlap_s=body.overlap_s,
        actor=merchant.key_id,
    )
    return {
        "endpoint_id": rotated.endpoint_id,
        "secret_id": rotated.secret_id,
        "secret": rotated.secret,
        "created_at": ts(rotated.created_at),
        "previous": [_secret(p) for p in rotated.previous],
    }


@router.get("/v1/webhook-endpoints/{endpoint_id}/deliveries")
def endpoint_deliveries(
    ctx: Ctx,
    merchant: CurrentMerchant,
    endpoint_id: str,
    limit: PAGE = 20,
    starting_after: Cursor = None,
) -> dict[str, Any]:
    """The endpoint's deliveries, newest first, each with its log of attempts."""
    merchant.require(MANAGE)
    rows = webhooks.deliveries_of_endpoint(
        ctx,
        merchant_id=merchant.merchant_id,
        endpoint_id=endpoint_id,
        limit=limit,
        starting_after=starting_after,
    )
    return {"data": [_delivery(d) for d in rows], "has_more": len(rows) == limit}


@router.post("/v1/webhook-endpoints/{endpoint_id}/redeliveries", status_code=202)
def redeliver(
    ctx: Ctx, merchant: CurrentMerchant, endpoint_id: str, body: RedeliveryCreate
) -> dict[str, Any]:
    """Send an event to the endpoint again, on a fresh schedule, with the same event id."""
    merchant.require(MANAGE)
    delivery = webhooks.redeliver(
        ctx,
        merchant_id=merchant.merchant_id,
        endpoint_id=endpoint_id,
        event_id=body.event_id,
        actor=merchant.key_id,
    )
    return _delivery(DeliveryView(delivery, []))


@router.get("/v1/events")
def list_events(
    ctx: Ctx, merchant: CurrentMerchant, limit: PAGE = 20, starting_after: Cursor = None
) -> dict[str, Any]:
    """The merchant's events, newest first, as their deliveries carry them."""
    merchant.require("payments:read")
    rows = webhooks.list_events(
        ctx, merchant_id=merchant.merchant_id, limit=limit, starting_after=starting_after
    )
    return {"data": [_event(e) for e in rows], "has_more": len(rows) == limit}


@router.get("/v1/events/{event_id}")
def get_event(ctx: Ctx, merchant: CurrentMerchant, event_id: str) -> dict[str, Any]:
    merchant.require("payments:read")
    return _event(webhooks.get_event(ctx, merchant_id=merchant.merchant_id, event_id=event_id))


@router.get("/v1/events/{event_id}/deliveries")
def event_deliveries(ctx: Ctx, merchant: CurrentMerchant, event_id: str) -> dict[str, Any]:
    """The event's delivery to each endpoint, with their logs."""
    merchant.require(MANAGE)
    rows = webhooks.deliveries_of_event(ctx, merchant_id=merchant.merchant_id, event_id=event_id)
    return {"data": [_delivery(d) for d in rows]}
