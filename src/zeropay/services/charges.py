"""Merchants charge a payer's instrument through a merchant token (card on file), each charge
authorized by a one-time cryptogram from one of the payer's bound devices.

One transaction per charge, in the order of the checks: the merchant token (another merchant's
answers like an unknown one), the cryptogram (``domain.instruments.verify_cryptogram``) and its
counter (a conditional UPDATE: two charges with one counter pay once), then the funding gateway
(the only code that reads the number back), then the charge record and, when approved, the
ledger transfer from the instrument's funding account to the merchant. A declined charge is
recorded and moves no money.

A refused cryptogram is answered with one code, ``cryptogram_invalid``, whatever the cause; the
audit log keeps the cause. An altered or forged one counts a failure against the device key (five
in a row lock it, as a factor is locked: ``domain.lockout``), written in the transaction that
refuses it, which commits. A replay -- a genuine cryptogram whose counter is spent: a merchant's
retry, or a copy -- is refused without counting: it teaches nothing about the key, and counting
it would let a retrying merchant lock the payer out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from zeropay.domain import bounds
from zeropay.domain.errors import (
    CryptogramInvalid,
    CryptogramLocked,
    DomainError,
    FactorLocked,
    NotFound,
    invariant,
)
from zeropay.domain.instruments import (
    MERCHANT_TOKEN_PREFIX,
    Charge,
    ChargeStatus,
    DeviceKey,
    Grant,
    Instrument,
    TokenUse,
    made_with,
    verify_cryptogram,
)
from zeropay.domain.ledger import AccountKind, Transfer, TransferKind, plan_transfer
from zeropay.domain.lockout import (
    FactorState,
    LockoutEvent,
    check_usable,
    register_failure,
    register_success,
)
from zeropay.domain.money import Money
from zeropay.services import audit, notices
from zeropay.services.accounts import hash_token
from zeropay.services.context import AppContext, UnitOfWork
from zeropay.services.idempotency import Hook
from zeropay.services.ports import FundingGateway, FundingRequest

UNKNOWN_TOKEN = "no such merchant token"  # noqa: S105 - a message


@dataclass(frozen=True)
class _Refused:
    """A charge refused after its failure was written: raised once that transaction commits."""

    error: DomainError


def charge(
    ctx: AppContext,
    gateway: FundingGateway,
    *,
    merchant_id: str,
    token: str,
    amount: Money,
    counter: int,
    cryptogram: bytes,
    on_commit: Hook | None = None,
) -> Charge:
    """Charge the instrument behind ``token`` (a merchant token of this merchant) for
    ``amount``, authorized by ``cryptogram`` with ``counter``. Returns the charge, succeeded or
    declined; raises ``NotFound`` for a token that is not this merchant's, ``CryptogramInvalid``
    or ``CryptogramLocked`` for a cryptogram that does not authorize this use."""
    ctx.profile.limits.check_payment(amount)  # a micropayment platform: the same ceilings
    if not token.startswith(MERCHANT_TOKEN_PREFIX + "_") or len(token) > bounds.TOKEN_LENGTH_MAX:
        raise NotFound(UNKNOWN_TOKEN)
    token_hash = hash_token(token)
    charge_id = ctx.new_id("chg")
    use = TokenUse(token=token, amount=amount, merchant_id=merchant_id, counter=counter)

    def work(uow: UnitOfWork) -> Charge | _Refused:
        grant = uow.instruments.grant_by_token_hash(token_hash, lock=True)
        # Another merchant's token answers exactly like an unknown one: no oracle for tokens.
        if grant is None or grant.merchant_id != merchant_id:
            raise NotFound(UNKNOWN_TOKEN)
        instrument = uow.instruments.get(grant.instrument_id)
        if instrument is None or instrument.status != "active":
            raise NotFound(UNKNOWN_TOKEN)
        keys = uow.instruments.device_keys_of(instrument.id, lock=True)
        key = _authorized(ctx, uow, instrument, grant, keys, use, cryptogram)
        if isinstance(key, _Refused):
            return key
        made = _fund(ctx, uow, gateway, charge_id, instrument, grant, key, use)
        if on_commit is not None:
            on_commit(uow, made)
        return made

    result = ctx.run(work)
    if isinstance(result, _Refused):
        raise result.error
    return result


def get(ctx: AppContext, *, merchant_id: str, charge_id: str) -> Charge:
    found = ctx.read(lambda uow: uow.instruments.charge(merchant_id, charge_id))
    if found is None:
        raise NotFound("no such charge")
    return found


# ---- the cryptogram -----------------------------------------------------------------------------


def _authorized(
    ctx: AppContext,
    uow: UnitOfWork,
    instrument: Instrument,
    grant: Grant,
    keys: Sequence[DeviceKey],
    use: TokenUse,
    presented: bytes,
) -> DeviceKey | _Refused:
    """The device key whose cryptogram this is, its counter advanced; or the refusal, with the
    failure counted. The request names no key: each of the instrument's (few) keys is tried."""
    now = ctx.now()
    candidates = [(key, _secret(ctx, instrument, key)) for key in keys]
    signer = next(((k, s) for k, s in candidates if made_with(s, use, presented)), None)
    if signer is None:
        # Altered (another amount, currency, merchant, token or counter) or forged: any of the
        # instrument's usable keys may be the one under attack, so each counts the failure.
        usable = [k for k in keys if _usable(k, ctx)]
        return _refuse(ctx, uow, instrument, grant, usable, use, reason="mismatch")
    key, secret = signer
    try:
        check_usable(key.lockout, now)
    except FactorLocked as locked:
        # Only the holder of the key learns of the lock: a forgery matches no key.
        refusal = CryptogramLocked(
            "the payer's device key is locked after repeated failures; the payer must set "
            "the device up for this instrument again",
            **locked.details,
        )
        return _refuse(ctx, uow, instrument, grant, [], use, reason="locked", error=refusal)
    try:
        verify_cryptogram(
            use=use, presented=presented, expected_key=secret, last_counter=key.last_counter
        )
    except CryptogramInvalid as refused:
        invariant(refused.details["reason"] == "replayed", "the key made this cryptogram")
        return _refuse(ctx, uow, instrument, grant, [], use, reason="replayed")
    if not uow.instruments.advance_counter(key.id, use.counter, now):
        # The database's own check: a charge that committed since the key was read took this
        # counter (or a later one). The row lock makes this rare; the answer is the same.
        return _refuse(ctx, uow, instrument, grant, [], use, reason="replayed")
    if key.lockout != FactorState():
        uow.instruments.save_key_lockout(key.id, register_success(key.lockout))
    return key


def _secret(ctx: AppContext, instrument: Instrument, key: DeviceKey) -> bytes:
    invariant(key.key_ciphertext is not None, "an active device key holds its key")
    assert key.key_ciphertext is not None
    # Under the instrument owner's key: a key row moved to another payer's instrument fails.
    return ctx.keyring.decrypt(
        key.key_ciphertext,
        table="instrument_device_keys",
        column="key",
        row_id=key.id,
        subject=instrument.user_id,
    )


def _usable(key: DeviceKey, ctx: AppContext) -> bool:
    try:
        check_usable(key.lockout, ctx.now())
    except FactorLocked:
        return False
    return True


_LOCK_ALERTS = {
    LockoutEvent.LOCKED: (
        "ZeroPay: charges to a payment instrument are paused",
        "Charges to one of your payment instruments were refused {failures} times in a row, so "
        "its device payment keys are locked until {until}.",
    ),
    LockoutEvent.FINAL_WARNING: (
        "ZeroPay: one more lock will be permanent",
        "Warning: one more lock and the payment keys of one of your instruments stay locked "
        "until you set your device up for it again.",
    ),
    LockoutEvent.LOCKED_PERMANENTLY: (
        "ZeroPay: a payment instrument's keys are locked",
        "The payment keys of one of your instruments are locked. Set your device up for it "
        "again, after signing in, to pay with it; consider revoking merchants you do not know.",
    ),
}


def _refuse(
    ctx: AppContext,
    uow: UnitOfWork,
    instrument: Instrument,
    grant: Grant,
    keys: Sequence[DeviceKey],
    use: TokenUse,
    *,
    reason: str,
    error: DomainError | None = None,
) -> _Refused:
    """Count one failure on each of ``keys`` (PSD2 RTS Art. 4(3)(b): a lock after five in a
    row), tell the payer at each lock, audit the cause, and answer with the one code (or
    ``error``)."""
    now = ctx.now()
    audit.record(
        ctx,
        uow,
        "charge.cryptogram_refused",
        actor=grant.merchant_id,
        subject=instrument.id,
        grant=grant.id,
        reason=reason,
        counter=use.counter,
        amount_minor=use.amount.amount_minor,
        currency=use.amount.currency.code,
    )
    for key in keys:
        after, events = register_failure(key.lockout, now, ctx.lockout)
        uow.instruments.save_key_lockout(key.id, after)
        until = after.locked_until.isoformat() if after.locked_until else ""
        for event in events:
            kind = f"instrument.device_key_{event.name.lower()}"
            subject, body = _LOCK_ALERTS[event]
            notices.alert(
                ctx,
                uow,
                user_id=instrument.user_id,
                kind=kind,
                subject=subject,
                body=body.format(failures=ctx.lockout.failures_max, until=until),
            )
            audit.record(ctx, uow, kind, actor="system", subject=key.id, locks=after.locks)
    return _Refused(error or CryptogramInvalid("the cryptogram does not authorize this charge"))


# ---- funding and the ledger ---------------------------------------------------------------------


def _fund(
    ctx: AppContext,
    uow: UnitOfWork,
    gateway: FundingGateway,
    charge_id: str,
    instrument: Instrument,
    grant: Grant,
    key: DeviceKey,
    use: TokenUse,
) -> Charge:
    now = ctx.now()
    amount = use.amount
    outcome = gateway.charge(
        uow,
        FundingRequest(
            charge_id=charge_id,
            instrument=instrument,
            merchant_id=grant.merchant_id,
            amount=amount,
        ),
        now=now,
        audit=partial(audit.record, ctx, uow),
    )
    transfer_id = None
    if outcome.approved:
        # From the instrument's external funding account to the merchant, as a top-up posts
        # from its funding source: the ledger names the instrument and the merchant token's
        # grant, never the number.
        code = amount.currency.code
        funding = uow.ledger.open_account(AccountKind.FUNDING, instrument.id, code, now)
        merchant = uow.ledger.open_account(AccountKind.MERCHANT, grant.merchant_id, code, now)
        transfer = Transfer(
            id=charge_id,
            kind=TransferKind.POSTED,
            debit_account_id=funding.id,
            credit_account_id=merchant.id,
            amount=amount,
            code="charge",
            created_at=now,
            reference=grant.id,
        )
        change = plan_transfer(debit=funding, credit=merchant, amount=amount)
        uow.ledger.apply(transfer, change, debit_limited=False)
        transfer_id = transfer.id
    made = Charge(
        id=charge_id,
        merchant_id=grant.merchant_id,
        grant_id=grant.id,
        instrument_id=instrument.id,
        device_key_id=key.id,
        kind=instrument.kind,
        amount=amount,
        counter=use.counter,
        status=ChargeStatus.SUCCEEDED if outcome.approved else ChargeStatus.DECLINED,
        created_at=now,
        decline_code=outcome.decline_code,
        transfer_id=transfer_id,
    )
    uow.instruments.add_charge(made)
    audit.record(
        ctx,
        uow,
        f"charge.{made.status.value}",
        actor=grant.merchant_id,
        subject=charge_id,
        instrument=instrument.id,
        grant=grant.id,
        device_key=key.id,
        amount_minor=amount.amount_minor,
        currency=amount.currency.code,
        decline_code=outcome.decline_code,
    )
    return made
