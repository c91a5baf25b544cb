"""Funding sources behind the ``FundingGateway`` port, and the one capability that reads a payment
instrument's number back out of the vault.

``Detokenizer`` is built in ``bootstrap.py`` around the vault's ``Revealer`` (a number sits under
a key of its owner's that ``KeyRing.decrypt`` refuses) and handed to the funding gateway only: it
is not on the ``AppContext``, so no use case can read a number. Each detokenization is counted in
the database (per instrument and over the platform, in fixed windows shared by every API
process) and written to the audit log naming the instrument and the purpose, never the number.

``SandboxGateway`` is the shipped funding source: no network, documented outcomes (the way card
networks publish test numbers), so clients can exercise every path.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from zeropay.domain import bounds
from zeropay.domain.errors import RateLimited, invariant
from zeropay.domain.instruments import DeclineCode, Instrument, InstrumentKind, is_expired
from zeropay.services.ports import (
    AuditTrail,
    FundingOutcome,
    FundingRequest,
    UnitOfWork,
)

if TYPE_CHECKING:
    from zeropay.adapters.vault.vault import Revealer


class Detokenizer:
    """Decrypts an instrument's number for the funding gateway that holds this object."""

    def __init__(
        self,
        revealer: Revealer,
        *,
        actor: str,
        per_instrument_max: int = bounds.DETOKENIZE_PER_INSTRUMENT_MAX,
        overall_max: int = bounds.DETOKENIZE_OVERALL_MAX,
        window_s: int = bounds.DETOKENIZE_WINDOW_S,
    ) -> None:
        invariant(1 <= per_instrument_max <= overall_max, "detokenization limits are ordered")
        invariant(window_s > 0, "a detokenization window has a length")
        self._revealer = revealer
        self._actor = actor
        self._per_instrument_max = per_instrument_max
        self._overall_max = overall_max
        self._window_s = window_s

    def detokenize(
        self,
        uow: UnitOfWork,
        instrument: Instrument,
        *,
        purpose: str,
        reference: str,
        now: datetime,
        audit: AuditTrail,
    ) -> str:
        """The instrument's number, counted and audited in ``uow``'s transaction. Past a limit
        raises ``RateLimited`` (the caller's transaction then rolls back: nothing was read)."""
        invariant(
            instrument.status == "active" and instrument.number_ciphertext is not None,
            "only an active instrument is detokenized",
        )
        assert instrument.number_ciphertext is not None
        self._count(uow, f"detokenize:{instrument.id}", self._per_instrument_max, now)
        self._count(uow, "detokenize:*", self._overall_max, now)
        number = self._revealer.reveal(
            instrument.number_ciphertext,
            table="instruments",
            column="number",
            row_id=instrument.id,
            subject=instrument.user_id,  # a row moved to another owner fails
        ).decode()
        audit(
            "instrument.detokenized",
            actor=self._actor,
            subject=instrument.id,
            purpose=purpose,
            reference=reference,
        )
        return number

    def _count(self, uow: UnitOfWork, key: str, limit: int, now: datetime) -> None:
        start = int(now.timestamp()) // self._window_s * self._window_s
        window_start = datetime.fromtimestamp(start, now.tzinfo)
        window_end = window_start + timedelta(seconds=self._window_s)
        expires_at = window_end + timedelta(seconds=self._window_s)
        if uow.replay.hit(key, window_start, expires_at) > limit:
            retry_s = int((window_end - now).total_seconds()) + 1
            raise RateLimited(
                "too many charges on this instrument for now; try again shortly",
                retry_after_s=retry_s,
            )


# The sandbox's documented card numbers (after the networks' test numbers): these two fail, every
# other valid number is approved.
SANDBOX_CARD_DECLINES = {
    "4000000000000002": DeclineCode.CARD_DECLINED,
    "4000000000009995": DeclineCode.INSUFFICIENT_FUNDS,
}
# A mobile number whose carrier refuses every bill.
SANDBOX_CARRIER_DECLINES = {"+821000000002": DeclineCode.CARRIER_DECLINED}
# Korean carrier billing is capped per user per calendar month by carrier terms (STANDARDS.md:
# KRW 1,000,000); the sandbox carrier bills in KRW only.
CARRIER_MONTHLY_MAX_MINOR = {"KRW": 1_000_000}
CARRIER_MONTH_ZONE = ZoneInfo("Asia/Seoul")


class SandboxGateway:
    """The shipped funding source: approves, or declines with a documented code."""

    def __init__(self, detokenizer: Detokenizer) -> None:
        self._detokenizer = detokenizer

    def charge(
        self, uow: UnitOfWork, request: FundingRequest, *, now: datetime, audit: AuditTrail
    ) -> FundingOutcome:
        instrument = request.instrument
        # What the gateway can decide without the number, it decides first: fewer reads of it.
        if instrument.expiry is not None and is_expired(instrument.expiry, now):
            return FundingOutcome(DeclineCode.EXPIRED_CARD.value)
        code = request.amount.currency.code
        carrier = instrument.kind is InstrumentKind.CARRIER
        if carrier and code not in CARRIER_MONTHLY_MAX_MINOR:
            return FundingOutcome(DeclineCode.CURRENCY_NOT_SUPPORTED.value)
        number = self._detokenizer.detokenize(
            uow, instrument, purpose="charge", reference=request.charge_id, now=now, audit=audit
        )
        if not carrier:
            declined = SANDBOX_CARD_DECLINES.get(number)
            return FundingOutcome(declined.value if declined else None)
        if number in SANDBOX_CARRIER_DECLINES:
            return FundingOutcome(SANDBOX_CARRIER_DECLINES[number].value)
        local = now.astimezone(CARRIER_MONTH_ZONE)
        if not uow.instruments.add_carrier_spend(
            instrument.user_id,
            code,
            f"{local.year:04d}-{local.month:02d}",
            request.amount.amount_minor,
            limit=CARRIER_MONTHLY_MAX_MINOR[code],
        ):
            return FundingOutcome(DeclineCode.CARRIER_MONTHLY_LIMIT.value)
        return FundingOutcome()
