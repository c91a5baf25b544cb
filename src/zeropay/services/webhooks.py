"""Merchant webhooks, the use cases: endpoints and their signing secrets, the fan-out of the
outbox (``payment_events``) into deliveries, the worker that makes attempts, and what a
merchant reads and asks for (its events, the delivery log, a redelivery).

The payment path never waits on any of this: ``payments.save`` writes an event in the payment's
own transaction and nothing more. The fan-out and the worker run as leased jobs
(``services.jobs``) and from ``zeropay webhooks deliver``. No transaction is open while a
receiver is called: a delivery is leased in one transaction, the POST is made, and its outcome
recorded in another.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from zeropay.domain import bounds
from zeropay.domain.errors import (
    Conflict,
    InfrastructureError,
    InvalidStateTransition,
    NotFound,
    UrlRefused,
    WebhookLimitExceeded,
    invariant,
)
from zeropay.domain.webhooks import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    SECRET_PREFIX,
    SIGNATURE_HEADER,
    Attempt,
    ClaimedDelivery,
    Delivery,
    DeliveryState,
    Endpoint,
    EndpointStatus,
    SecretPeriod,
    StoredSecret,
    WebhookUrl,
    advance_cursor,
    after_attempt,
    check_resolved,
    fanout_pairs,
    parse_overlap_s,
    parse_url,
    plan_rotation,
    signature_header,
    signing_order,
)
from zeropay.services import audit
from zeropay.services.context import AppContext, UnitOfWork, urlsafe
from zeropay.services.ports import PaymentEventRecord, WebhookAnswer

log = logging.getLogger("zeropay.webhooks")

SECRET_BYTES = 32  # 256 bits, the size of the HMAC-SHA256 key
LEASE_TOKEN_BYTES = 8
SECRETS_TABLE, SECRETS_COLUMN = "webhook_secrets", "secret"


@dataclass(frozen=True)
class CreatedEndpoint:
    endpoint: Endpoint
    secret_id: str
    secret: str  # shown once, stored only encrypted


@dataclass(frozen=True)
class EndpointView:
    endpoint: Endpoint
    secrets: list[SecretPeriod]  # newest first; never their values


@dataclass(frozen=True)
class RotatedSecret:
    endpoint_id: str
    secret_id: str
    secret: str  # shown once
    created_at: datetime
    previous: list[SecretPeriod]  # the secrets still signing, with the end of their overlap


@dataclass(frozen=True)
class DeliveryView:
    delivery: Delivery
    attempts: list[Attempt]  # newest first, at most bounds.WEBHOOK_ATTEMPTS_LISTED_MAX


@dataclass(frozen=True)
class FanoutReport:
    events: int  # read after the cursor
    late: int  # found in gaps the cursor had jumped
    deliveries: int  # made


# ---- endpoints and secrets ----------------------------------------------------------------------


def _parse(ctx: AppContext, raw: object) -> WebhookUrl:
    local = ctx.webhooks.allow_local
    return parse_url(raw, allow_http=local, allow_loopback=local)


def _new_secret(ctx: AppContext, now: datetime) -> tuple[str, StoredSecret]:
    secret_id = ctx.new_id("whs")
    secret = SECRET_PREFIX + urlsafe(ctx.random_bytes(SECRET_BYTES))
    ciphertext = ctx.keyring.encrypt(
        secret.encode(), table=SECRETS_TABLE, column=SECRETS_COLUMN, row_id=secret_id
    )
    return secret, StoredSecret(SecretPeriod(secret_id, now, None), ciphertext)


def _owned(uow: UnitOfWork, merchant_id: str, endpoint_id: str, *, lock: bool) -> Endpoint:
    # Another merchant's endpoint is "not found", exactly like one that does not exist.
    endpoint = uow.webhooks.endpoint(merchant_id, endpoint_id, lock=lock)
    if endpoint is None:
        raise NotFound("no such webhook endpoint")
    return endpoint


def _active(endpoint: Endpoint) -> Endpoint:
    if endpoint.status is not EndpointStatus.ACTIVE:
        raise InvalidStateTransition("this webhook endpoint is disabled", reason="disabled")
    return endpoint


def create_endpoint(
    ctx: AppContext, *, merchant_id: str, url: object, actor: str
) -> CreatedEndpoint:
    """A new endpoint for the merchant's events from now on, with its first signing secret,
    returned once."""
    parsed = _parse(ctx, url)
    endpoint_id = ctx.new_id("whe")

    def work(uow: UnitOfWork) -> CreatedEndpoint:
        now = ctx.now()
        if not uow.webhooks.lock_merchant(merchant_id):
            raise NotFound("no such merchant")
        if uow.webhooks.active_endpoint_count(merchant_id) >= (
            bounds.WEBHOOK_ENDPOINTS_PER_MERCHANT_MAX
        ):
            raise WebhookLimitExceeded(
                f"at most {bounds.WEBHOOK_ENDPOINTS_PER_MERCHANT_MAX} active webhook endpoints",
                reason="endpoints",
            )
        endpoint = Endpoint(endpoint_id, merchant_id, parsed.url, EndpointStatus.ACTIVE, now)
        secret, stored = _new_secret(ctx, now)
        uow.webhooks.add_endpoint(endpoint, stored)
        # The host only: a merchant may put a token of its own in the path or query.
        audit.record(
            ctx,
            uow,
            "webhook_endpoint.created",
            actor=actor,
            subject=endpoint_id,
            merchant_id=merchant_id,
            host=parsed.host,
            secret_id=stored.period.id,
        )
        return CreatedEndpoint(endpoint, stored.period.id, secret)

    return ctx.run(work)


def list_endpoints(
    ctx: AppContext, *, merchant_id: str, limit: int, starting_after: str | None
) -> list[Endpoint]:
    return ctx.read(
        lambda uow: uow.webhooks.endpoints(merchant_id, limit=limit, starting_after=starting_after)
    )


def get_endpoint(ctx: AppContext, *, merchant_id: str, endpoint_id: str) -> EndpointView:
    def work(uow: UnitOfWork) -> EndpointView:
        endpoint = _owned(uow, merchant_id, endpoint_id, lock=False)
        return EndpointView(endpoint, uow.webhooks.secret_periods(endpoint_id))

    return ctx.read(work)


def disable_endpoint(
    ctx: AppContext, *, merchant_id: str, endpoint_id: str, actor: str
) -> Endpoint:
    """The endpoint receives nothing more; what it was still owed is given up and its signing
    secrets are deleted. Its log stays readable. Disabling it again changes nothing."""

    def work(uow: UnitOfWork) -> Endpoint:
        endpoint = _owned(uow, merchant_id, endpoint_id, lock=True)
        if endpoint.status is EndpointStatus.DISABLED:
            return endpoint
        now = ctx.now()
        given_up = uow.webhooks.disable_endpoint(endpoint_id, now)
        audit.record(
            ctx,
            uow,
            "webhook_endpoint.disabled",
            actor=actor,
            subject=endpoint_id,
            merchant_id=merchant_id,
            deliveries_given_up=given_up,
        )
        return replace(endpoint, status=EndpointStatus.DISABLED, disabled_at=now)

    return ctx.run(work)


def rotate_secret(
    ctx: AppContext, *, merchant_id: str, endpoint_id: str, overlap_s: object, actor: str
) -> RotatedSecret:
    """A new signing secret, returned once. The ones it replaces keep signing until the overlap
    ends (24 hours unless told; 0 ends them at once, for a secret that leaked), so a receiver
    can switch without missing a delivery."""
    overlap = parse_overlap_s(overlap_s)

    def work(uow: UnitOfWork) -> RotatedSecret:
        _active(_owned(uow, merchant_id, endpoint_id, lock=True))
        now = ctx.now()
        uow.webhooks.purge_expired_secrets(endpoint_id, now)
        expiries = plan_rotation(
            uow.webhooks.secret_periods(endpoint_id), now=now, overlap_s=overlap
        )
        uow.webhooks.set_secret_expiry(endpoint_id, expiries)
        secret, stored = _new_secret(ctx, now)
        uow.webhooks.add_secret(endpoint_id, stored)
        audit.record(
            ctx,
            uow,
            "webhook_secret.rotated",
            actor=actor,
            subject=endpoint_id,
            merchant_id=merchant_id,
            secret_id=stored.period.id,
            overlap_s=overlap,
            previous={k: v.isoformat() for k, v in sorted(expiries.items())},
        )
        previous = [
            p
            for p in uow.webhooks.secret_periods(endpoint_id)
            if p.id != stored.period.id and p.valid_at(now)
        ]
        return RotatedSecret(endpoint_id, stored.period.id, secret, now, previous)

    return ctx.run(work)


# ---- what a merchant reads ----------------------------------------------------------------------


def _with_attempts(uow: UnitOfWork, deliveries: list[Delivery]) -> list[DeliveryView]:
    attempts = uow.webhooks.attempts_of(
        [d.id for d in deliveries], limit_each=bounds.WEBHOOK_ATTEMPTS_LISTED_MAX
    )
    return [DeliveryView(d, attempts.get(d.id, [])) for d in deliveries]


def deliveries_of_endpoint(
    ctx: AppContext,
    *,
    merchant_id: str,
    endpoint_id: str,
    limit: int,
    starting_after: str | None,
) -> list[DeliveryView]:
    """The endpoint's deliveries, newest first, each with its latest attempts."""

    def work(uow: UnitOfWork) -> list[DeliveryView]:
        _owned(uow, merchant_id, endpoint_id, lock=False)
        after = None
        if starting_after is not None:
            after = uow.webhooks.delivery(merchant_id, starting_after)
            if after is None or after.endpoint_id != endpoint_id:
                return []
        found = uow.webhooks.deliveries_of_endpoint(endpoint_id, limit=limit, starting_after=after)
        return _with_attempts(uow, found)

    return ctx.read(work)


def _event(uow: UnitOfWork, merchant_id: str, event_id: str) -> PaymentEventRecord:
    event = uow.webhooks.event(merchant_id, event_id)
    if event is None:
        raise NotFound("no such event")
    return event


def deliveries_of_event(ctx: AppContext, *, merchant_id: str, event_id: str) -> list[DeliveryView]:
    """The event's delivery to each endpoint, with their latest attempts."""

    def work(uow: UnitOfWork) -> list[DeliveryView]:
        _event(uow, merchant_id, event_id)
        found = uow.webhooks.deliveries_of_event(
            merchant_id, event_id, limit=bounds.WEBHOOK_EVENT_DELIVERIES_MAX
        )
        return _with_attempts(uow, found)

    return ctx.read(work)


def list_events(
    ctx: AppContext, *, merchant_id: str, limit: int, starting_after: str | None
) -> list[PaymentEventRecord]:
    return ctx.read(
        lambda uow: uow.webhooks.events(merchant_id, limit=limit, starting_after=starting_after)
    )


def get_event(ctx: AppContext, *, merchant_id: str, event_id: str) -> PaymentEventRecord:
    return ctx.read(lambda uow: _event(uow, merchant_id, event_id))


def event_body(event: PaymentEventRecord) -> dict[str, Any]:
    """The event as its deliveries carry it."""
    body: dict[str, Any] = json.loads(event.body)
    return body


def redeliver(
    ctx: AppContext, *, merchant_id: str, endpoint_id: str, event_id: str, actor: str
) -> Delivery:
    """Send the event to the endpoint again on a fresh schedule (due now, all attempts
    available), under the same event id, so a receiver that got it before drops it by id. An
    event from before the endpoint existed may be sent this way too."""

    def work(uow: UnitOfWork) -> Delivery:
        now = ctx.now()
        _active(_owned(uow, merchant_id, endpoint_id, lock=True))
        event = _event(uow, merchant_id, event_id)
        existing = uow.webhooks.delivery_for(event_id, endpoint_id, lock=True)
        if existing is None:
            delivery = Delivery(
                id=ctx.new_id("whd"),
                event_id=event_id,
                endpoint_id=endpoint_id,
                merchant_id=merchant_id,
                state=DeliveryState.PENDING,
                attempts=0,
                next_attempt_at=now,
                created_at=now,
                event_type=event.type,
            )
            if uow.webhooks.add_deliveries([delivery]) == 0:  # the fan-out made it meanwhile
                existing = uow.webhooks.delivery_for(event_id, endpoint_id, lock=True)
                invariant(existing is not None, "a delivery refused as a duplicate exists")
        if existing is not None:
            leased = existing.leased_until is not None and existing.leased_until > now
            if existing.state is DeliveryState.PENDING and leased:
                # Restarting it now would let a second worker send it while this attempt is
                # still on the wire.
                raise Conflict(
                    "an attempt of this delivery is in progress: ask again in a minute",
                    reason="attempt_in_progress",
                )
            uow.webhooks.restart_delivery(existing.id, now)
            delivery = replace(
                existing,
                state=DeliveryState.PENDING,
                attempts=0,
                next_attempt_at=now,
                finished_at=None,
                event_type=event.type,
            )
        audit.record(
            ctx,
            uow,
            "webhook.redelivery_requested",
            actor=actor,
            subject=delivery.id,
            merchant_id=merchant_id,
            event_id=event_id,
            endpoint_id=endpoint_id,
        )
        return delivery

    return ctx.run(work)


# ---- fan-out ------------------------------------------------------------------------------------


def _fan_out_once(ctx: AppContext, uow: UnitOfWork, batch: int) -> tuple[FanoutReport, bool]:
    now = ctx.now()
    cursor = uow.webhooks.lock_fanout()
    late = uow.webhooks.events_in_gaps(cursor.gaps, limit=batch)
    fresh = uow.webhooks.events_after(cursor.last_seq, limit=batch)
    events = late + fresh
    endpoints = uow.webhooks.active_endpoints({e.merchant_id for e in events})
    deliveries = [
        Delivery(
            id=ctx.new_id("whd"),
            event_id=event.id,
            endpoint_id=endpoint.id,
            merchant_id=event.merchant_id,
            state=DeliveryState.PENDING,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        for event, endpoint in fanout_pairs(events, endpoints)
    ]
    made = uow.webhooks.add_deliveries(deliveries)
    after = advance_cursor(
        cursor, fresh=[e.seq for e in fresh], late=[e.seq for e in late], now=now
    )
    uow.webhooks.save_fanout(after, now)
    return FanoutReport(events=len(fresh), late=len(late), deliveries=made), len(fresh) == batch


def fan_out(
    ctx: AppContext,
    *,
    batch: int = bounds.WEBHOOK_FANOUT_BATCH,
    rounds: int = bounds.WEBHOOK_FANOUT_ROUNDS_MAX,
) -> FanoutReport:
    """Turn new events into deliveries, one transaction per batch while there are more. The
    cursor row is locked in each, so two processes never fan out one event at once; the
    unique (event, endpoint) pair is the second guard."""
    events = late = made = 0
    for _ in range(rounds):
        report, more = ctx.run(lambda uow: _fan_out_once(ctx, uow, batch))
        events, late, made = events + report.events, late + report.late, made + report.deliveries
        if not more:
            break
    return FanoutReport(events=events, late=late, deliveries=made)


# ---- delivery -----------------------------------------------------------------------------------


def deliver_due(
    ctx: AppContext, *, owner: str, attempts_max: int = bounds.WEBHOOK_DELIVERY_BATCH
) -> int:
    """Make the attempts that are due, one delivery at a time: lease it, POST it, record what
    came of it. Ends after ``attempts_max`` attempts or ``bounds.WEBHOOK_DELIVERY_RUN_S``.
    Returns the attempts made."""
    if ctx.webhooks.sender is None:
        return 0
    started = ctx.now()
    ends = started + timedelta(seconds=bounds.WEBHOOK_DELIVERY_RUN_S)
    made = 0
    while made < attempts_max and ctx.now() < ends:
        token = f"{owner[:40]}:{ctx.random_bytes(LEASE_TOKEN_BYTES).hex()}"

        def claim(uow: UnitOfWork, token: str = token) -> list[ClaimedDelivery]:
            now = ctx.now()
            until = now + timedelta(seconds=bounds.WEBHOOK_LEASE_S)
            return uow.webhooks.claim_due(now, owner=token, until=until, limit=1)

        claimed = ctx.run(claim)
        if not claimed:
            break
        for one in claimed:
            attempt_at = ctx.now()
            _record(ctx, one, _send(ctx, one), attempt_at)
            made += 1
    return made


def _send(ctx: AppContext, claimed: ClaimedDelivery) -> WebhookAnswer:
    """One attempt, outside any transaction. The URL is checked again under today's rules and
    its name resolved now; an address the rules refuse is never connected to, and the
    connection goes to the address that was checked."""
    setup = ctx.webhooks
    assert setup.sender is not None  # deliver_due returns before this without one
    try:
        url = _parse(ctx, claimed.url)
        if url.is_ip:
            address = url.host
        else:
            found = setup.resolver.resolve(url.host, url.port) if setup.resolver else []
            address = check_resolved(url, found, allow_loopback=setup.allow_local)
    except UrlRefused as refused:
        return WebhookAnswer(None, f"refused:{refused.details.get('reason', 'malformed')}", 0)
    now = ctx.now()
    stored = {s.period.id: s.ciphertext for s in claimed.secrets}
    try:
        secrets = [
            ctx.keyring.decrypt(
                stored[p.id], table=SECRETS_TABLE, column=SECRETS_COLUMN, row_id=p.id
            )
            for p in signing_order([s.period for s in claimed.secrets], now)
        ]
    except InfrastructureError:
        log.exception("webhook secret of delivery %s cannot be read", claimed.delivery.id)
        return WebhookAnswer(None, "internal_error", 0)
    if not secrets:  # never send what the receiver could not tell from a forgery
        return WebhookAnswer(None, "no_valid_secret", 0)
    body = claimed.body.encode()
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: signature_header(secrets, int(now.timestamp()), body),
        EVENT_ID_HEADER: claimed.delivery.event_id,
        EVENT_TYPE_HEADER: claimed.event_type,
    }
    return setup.sender.post(url=url, address=address, headers=headers, body=body)


def _jitter(ctx: AppContext) -> float:
    return int.from_bytes(ctx.random_bytes(2), "big") / 65536


def _record(
    ctx: AppContext, claimed: ClaimedDelivery, answer: WebhookAnswer, started_at: datetime
) -> None:
    number = claimed.delivery.attempts + 1

    def work(uow: UnitOfWork) -> bool:
        now = ctx.now()
        outcome = after_attempt(
            attempt=number, status_code=answer.status_code, now=now, jitter=_jitter(ctx)
        )
        attempt = Attempt(
            delivery_id=claimed.delivery.id,
            attempt=number,
            started_at=started_at,
            duration_ms=answer.duration_ms,
            status_code=answer.status_code,
            error=answer.error,
        )
        return uow.webhooks.finish_attempt(attempt, outcome, owner=claimed.lease_owner, now=now)

    if not ctx.run(work):
        log.warning(
            "webhook delivery %s: lease lost or endpoint disabled during the attempt; "
            "only its log was written",
            claimed.delivery.id,
        )


def run_once(ctx: AppContext, *, owner: str) -> dict[str, int]:
    """One fan-out and one round of attempts (``zeropay webhooks deliver --once``)."""
    report = fan_out(ctx)
    return {
        "events": report.events,
        "late_events": report.late,
        "deliveries_made": report.deliveries,
        "attempts": deliver_due(ctx, owner=owner),
    }
