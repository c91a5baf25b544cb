"""A payer's payment instruments: added into the vault and named by tokens from then on, granted
to merchants as merchant tokens (card on file), and given a cryptogram key on each bound device
that pays with them.

Everything the vault must do (encrypt, blind index) is done before the transaction opens, so a
sealed vault refuses the request (503) before anything is written. Another payer's token, a
removed instrument and an unknown token all answer the same 404: a token is not an oracle.
"""

from __future__ import annotations

from dataclasses import dataclass

import phonenumbers

from zeropay.domain import bounds
from zeropay.domain.errors import (
    Forbidden,
    GrantExists,
    InstrumentExists,
    InstrumentInvalid,
    InstrumentLimitExceeded,
    NotFound,
)
from zeropay.domain.instruments import (
    CRYPTOGRAM_KEY_BYTES,
    MERCHANT_TOKEN_PREFIX,
    TOKEN_BYTES,
    TOKEN_PREFIX,
    DeviceKey,
    Grant,
    Instrument,
    NewInstrument,
    carrier_instrument,
    number_index_input,
)
from zeropay.domain.recovery import Restricted
from zeropay.domain.sessions import Session, require_recent_auth
from zeropay.services import audit, notices, recovery
from zeropay.services.accounts import hash_token
from zeropay.services.context import AppContext, UnitOfWork, urlsafe

INDEX_PURPOSE = "instrument.number"
# Carrier billing bills a mobile line. A number that may be either (the NANP's, for one) is
# taken at its word: the carrier refuses a bill it cannot place.
_MOBILE = frozenset(
    {phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE}
)


def parse_carrier(phone: object, region: object = None) -> NewInstrument:
    """A mobile number for carrier billing: international (``+82 10-1234-5678``), or national
    with the ISO 3166 ``region`` it is dialled in (``010-1234-5678``, ``KR``); stored as E.164."""
    if region is not None and (
        not isinstance(region, str) or region not in phonenumbers.SUPPORTED_REGIONS
    ):
        raise InstrumentInvalid(
            "region is an ISO 3166 two-letter country code, e.g. KR",
            field="region",
            reason="region",
        )
    if not isinstance(phone, str) or len(phone) > bounds.PHONE_LENGTH_MAX:
        raise InstrumentInvalid("phone is a mobile number", field="phone", reason="format")
    try:
        parsed = phonenumbers.parse(phone, region)
    except phonenumbers.NumberParseException:
        raise InstrumentInvalid(
            "phone is not a phone number: give it with its country code (+82 ...) or a region",
            field="phone",
            reason="unparsable",
        ) from None
    if parsed.country_code is None or not phonenumbers.is_valid_number(parsed):
        raise InstrumentInvalid("this phone number does not exist", field="phone", reason="invalid")
    if phonenumbers.number_type(parsed) not in _MOBILE:
        raise InstrumentInvalid(
            "carrier billing needs a mobile number", field="phone", reason="not_mobile"
        )
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return carrier_instrument(e164, country_code=parsed.country_code)


def new_token(ctx: AppContext, prefix: str) -> str:
    return f"{prefix}_{urlsafe(ctx.random_bytes(TOKEN_BYTES))}"


def _owned(uow: UnitOfWork, user_id: str, ref: str, *, lock: bool = False) -> Instrument:
    """The payer's active instrument named by its token (or, for a wallet that no longer holds
    the token, by the id the list shows)."""
    by_token = ref.startswith(TOKEN_PREFIX + "_")
    found = None
    if len(ref) <= bounds.TOKEN_LENGTH_MAX:
        found = uow.instruments.find(
            user_id,
            token_hash=hash_token(ref) if by_token else None,
            instrument_id=None if by_token else ref,
            lock=lock,
        )
    if found is None:
        raise NotFound("no such payment instrument")
    return found


def _room(held: int, limit: int, *, what: str, reason: str) -> None:
    if held >= limit:
        raise InstrumentLimitExceeded(f"at most {limit} {what}; remove one first", reason=reason)


# ---- adding, listing, removing ------------------------------------------------------------------


@dataclass(frozen=True)
class AddedInstrument:
    token: str  # shown in this answer only; stored as a hash
    instrument: Instrument
    display: str


def add(ctx: AppContext, *, user_id: str, new: NewInstrument) -> AddedInstrument:
    """Store a checked instrument in the vault and answer with its token. The same number twice
    for one payer is refused (``instrument_exists``), found by its blind index."""
    instrument_id = ctx.new_id("ins")
    token = new_token(ctx, TOKEN_PREFIX)
    keyring = ctx.keyring
    number_index = keyring.blind_index(
        number_index_input(user_id, new.number), purpose=INDEX_PURPOSE
    )
    # Sealed under the payer's own key (subject): erasing the payer crypto-shreds the number.
    number_ciphertext = keyring.encrypt(
        new.number.encode(),
        table="instruments",
        column="number",
        row_id=instrument_id,
        subject=user_id,
    )
    display_ciphertext = keyring.encrypt(
        new.display.encode(),
        table="instruments",
        column="display",
        row_id=instrument_id,
        subject=user_id,
    )

    def work(uow: UnitOfWork) -> Instrument:
        uow.instruments.lock_owner(user_id)
        exists = InstrumentExists("you have already added this number", reason="duplicate")
        if uow.instruments.by_number_index(user_id, number_index) is not None:
            raise exists
        _room(
            uow.instruments.active_count(user_id),
            bounds.INSTRUMENTS_PER_USER_MAX,
            what="payment instruments per payer",
            reason="instruments",
        )
        instrument = Instrument(
            id=instrument_id,
            user_id=user_id,
            kind=new.kind,
            status="active",
            created_at=ctx.now(),
            number_ciphertext=number_ciphertext,
            display_ciphertext=display_ciphertext,
            brand=new.brand,
            expiry=new.expiry,
        )
        if not uow.instruments.add(
            instrument, token_hash=hash_token(token), number_index=number_index
        ):
            raise exists  # added by a request that committed since the check
        audit.record(
            ctx, uow, "instrument.added", actor=user_id, subject=instrument_id, kind=new.kind.value
        )
        notices.alert(
            ctx,
            uow,
            user_id=user_id,
            kind="instrument.added",
            subject="ZeroPay: a payment instrument was added",
            body=f"A {new.kind.value} payment instrument was added to your account. "
            "If this wasn't you, remove it and change your password.",
        )
        return instrument

    return AddedInstrument(token=token, instrument=ctx.run(work), display=new.display)


@dataclass(frozen=True)
class InstrumentView:
    instrument: Instrument
    display: str


def _view(ctx: AppContext, instrument: Instrument) -> InstrumentView:
    assert instrument.display_ciphertext is not None  # active instruments only
    display = ctx.keyring.decrypt(
        instrument.display_ciphertext,
        table="instruments",
        column="display",
        row_id=instrument.id,
        subject=instrument.user_id,  # a row moved to another owner fails
    )
    return InstrumentView(instrument=instrument, display=display.decode())


def list_instruments(ctx: AppContext, *, user_id: str) -> list[InstrumentView]:
    found = ctx.read(lambda uow: uow.instruments.of_user(user_id))
    return [_view(ctx, i) for i in found]


@dataclass(frozen=True)
class GrantView:
    grant: Grant
    merchant_name: str


@dataclass(frozen=True)
class InstrumentDetail:
    view: InstrumentView
    grants: list[GrantView]
    device_keys: list[DeviceKey]


def detail(ctx: AppContext, *, user_id: str, ref: str) -> InstrumentDetail:
    """One instrument with the merchants holding a token for it and its devices' keys."""

    def work(uow: UnitOfWork) -> tuple[Instrument, list[GrantView], list[DeviceKey]]:
        instrument = _owned(uow, user_id, ref)
        grants = [
            GrantView(g, uow.merchants.name(g.merchant_id) or "")
            for g in uow.instruments.grants_of(instrument.id)
        ]
        return instrument, grants, uow.instruments.device_keys_of(instrument.id, lock=False)

    instrument, grants, keys = ctx.read(work)
    return InstrumentDetail(view=_view(ctx, instrument), grants=grants, device_keys=keys)


def remove(ctx: AppContext, *, user_id: str, ref: str) -> None:
    """Remove an instrument: its number is wiped, its merchant tokens and device keys stop
    working at once. Removing lowers what an attacker could do, so it needs no fresh sign-in."""

    def work(uow: UnitOfWork) -> None:
        instrument = _owned(uow, user_id, ref, lock=True)
        uow.instruments.remove(instrument.id, ctx.now())
        audit.record(ctx, uow, "instrument.removed", actor=user_id, subject=instrument.id)

    ctx.run(work)


# ---- merchant tokens (card on file) -------------------------------------------------------------


@dataclass(frozen=True)
class IssuedGrant:
    token: str  # the merchant token, shown in this answer only; stored as a hash
    view: GrantView


def grant(ctx: AppContext, session: Session, *, ref: str, merchant_id: object) -> IssuedGrant:
    """Let a merchant charge this instrument: a merchant token restricted to this instrument and
    this merchant. Putting a card on file with a payee is a mandate, so it needs a strong
    sign-in in the last few minutes (PSD2 RTS Art. 13, as for a trusted beneficiary)."""
    require_recent_auth(session, ctx.now(), ctx.policy.recent_auth_s)
    recovery.check(ctx, session, Restricted.ADD_PAYEE)
    user_id = session.user_id
    if not isinstance(merchant_id, str) or len(merchant_id) > bounds.ID_LENGTH_MAX:
        raise NotFound("no such merchant")
    grant_id = ctx.new_id("grt")
    token = new_token(ctx, MERCHANT_TOKEN_PREFIX)

    def work(uow: UnitOfWork) -> GrantView:
        instrument = _owned(uow, user_id, ref, lock=True)
        merchant_name = uow.merchants.name(merchant_id)
        if merchant_name is None:
            raise NotFound("no such merchant", merchant_id=merchant_id)
        held = uow.instruments.grants_of(instrument.id)
        if any(g.merchant_id == merchant_id for g in held):
            raise GrantExists(
                "this merchant already holds a token for this instrument; revoke it first",
                reason="duplicate",
            )
        _room(
            len(held),
            bounds.GRANTS_PER_INSTRUMENT_MAX,
            what="merchants per instrument",
            reason="grants",
        )
        made = Grant(
            id=grant_id,
            instrument_id=instrument.id,
            merchant_id=merchant_id,
            status="active",
            created_at=ctx.now(),
        )
        uow.instruments.add_grant(made, token_hash=hash_token(token))
        audit.record(
            ctx,
            uow,
            "instrument.granted",
            actor=user_id,
            subject=grant_id,
            instrument=instrument.id,
            merchant=merchant_id,
            session=session.id,
        )
        notices.alert(
            ctx,
            uow,
            user_id=user_id,
            kind="instrument.granted",
            subject="ZeroPay: a merchant can now charge your payment instrument",
            body=f"{merchant_name} can now charge one of your payment instruments. If this "
            "wasn't you, remove the instrument or revoke the merchant.",
        )
        return GrantView(made, merchant_name)

    return IssuedGrant(token=token, view=ctx.run(work))


def revoke_grant(ctx: AppContext, *, user_id: str, ref: str, grant_id: str) -> None:
    def work(uow: UnitOfWork) -> None:
        instrument = _owned(uow, user_id, ref, lock=True)
        if not uow.instruments.revoke_grant(instrument.id, grant_id, ctx.now()):
            raise NotFound("no such merchant token")
        audit.record(
            ctx,
            uow,
            "instrument.grant_revoked",
            actor=user_id,
            subject=grant_id,
            instrument=instrument.id,
        )

    ctx.run(work)


# ---- device cryptogram keys ---------------------------------------------------------------------


@dataclass(frozen=True)
class ProvisionedKey:
    secret: bytes  # shown in this answer only; stored sealed under the payer's key
    key: DeviceKey


def provision_device(ctx: AppContext, session: Session, *, ref: str) -> ProvisionedKey:
    """A fresh 256-bit cryptogram key for this instrument on the device this session was opened
    on (a bound device: the session is DPoP-bound to its key). The device's earlier key for the
    instrument, if any, stops working, so provisioning again is also the way out of a lock. A
    new payment credential needs a strong sign-in in the last few minutes."""
    device_id = session.device_id
    if device_id is None or session.jkt is None:
        raise Forbidden(
            "provision a payment key from a bound device (a DPoP session on it)",
            reason="bound_device_required",
        )
    require_recent_auth(session, ctx.now(), ctx.policy.recent_auth_s)
    recovery.check(ctx, session, Restricted.ADD_INSTRUMENT)
    key_id = ctx.new_id("dvk")
    secret = ctx.random_bytes(CRYPTOGRAM_KEY_BYTES)
    sealed = ctx.keyring.encrypt(
        secret,
        table="instrument_device_keys",
        column="key",
        row_id=key_id,
        subject=session.user_id,
    )

    def work(uow: UnitOfWork) -> DeviceKey:
        now = ctx.now()
        instrument = _owned(uow, session.user_id, ref, lock=True)
        device = uow.devices.get(device_id)
        if device is None or device.user_id != session.user_id or device.status != "active":
            raise Forbidden(
                "provision a payment key from a bound device (a DPoP session on it)",
                reason="bound_device_required",
            )
        replaced = uow.instruments.remove_device_keys(instrument.id, device_id, now)
        _room(
            len(uow.instruments.device_keys_of(instrument.id, lock=False)),
            bounds.DEVICE_KEYS_PER_INSTRUMENT_MAX,
            what="devices per instrument",
            reason="device_keys",
        )
        key = DeviceKey(
            id=key_id,
            instrument_id=instrument.id,
            device_id=device_id,
            user_id=session.user_id,
            status="active",
            created_at=now,
            key_ciphertext=sealed,
        )
        uow.instruments.add_device_key(key)
        audit.record(
            ctx,
            uow,
            "instrument.device_key_provisioned",
            actor=session.user_id,
            subject=key_id,
            instrument=instrument.id,
            device=device_id,
            replaced=replaced,
        )
        notices.alert(
            ctx,
            uow,
            user_id=session.user_id,
            kind="instrument.device_key_provisioned",
            subject="ZeroPay: a device can now pay with your payment instrument",
            body=f"{device.name} can now make payments with one of your payment instruments. "
            "If this wasn't you, remove the device and change your password.",
        )
        return key

    return ProvisionedKey(secret=secret, key=ctx.run(work))
