"""The rules of a recovery after its factors passed (domain.recovery), with a fixed clock: its
states, the cooling-off period and who it holds back, the signed links, the policy table."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from zeropay.domain import recovery as rules
from zeropay.domain.errors import ConfigurationError, InvalidStateTransition, RecoveryLinkInvalid
from zeropay.domain.recovery import Recovery, RecoveryPolicy, RecoveryState

T0 = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
KEY = b"k" * 32
POLICY = RecoveryPolicy()


def _mac(message: bytes) -> bytes:
    return hmac.new(KEY, message, hashlib.sha256).digest()


def _recovery(*, held: bool = False, new_device: bool = True) -> Recovery:
    made = Recovery(
        id="rcv_1",
        user_id="usr_1",
        flow_id="flw_1",
        state=RecoveryState.READY,
        factors=("recovery_code", "email_otp"),
        jkt="jkt-1",
        new_device=new_device,
        password_replaced=False,
        device_name="Laptop",
        platform="linux",
        device_class="platform",
        public_jwk="{}",
        created_at=T0,
        passed_at=T0,
        expires_at=T0,
    )
    return rules.passed(made, held=held, now=T0 + timedelta(minutes=2))


# ---- states -------------------------------------------------------------------------------------


def test_a_ready_recovery_completes_once_within_ten_minutes_and_cools_off_a_new_device() -> None:
    ready = _recovery()
    assert ready.state is RecoveryState.READY
    done = rules.complete(ready, device_id="dev_1", policy=POLICY, now=T0 + timedelta(minutes=11))
    assert done.state is RecoveryState.COMPLETED
    assert done.cooling_until == T0 + timedelta(minutes=11, hours=24)
    assert done.is_cooling(T0 + timedelta(hours=24)) and not done.is_cooling(T0 + timedelta(days=2))
    with pytest.raises(InvalidStateTransition):
        rules.complete(done, device_id="dev_1", policy=POLICY, now=T0 + timedelta(minutes=12))


def test_a_ready_recovery_lapses_after_ten_minutes() -> None:
    ready = _recovery()
    late = T0 + timedelta(minutes=12)
    assert ready.status(late) == "expired"
    with pytest.raises(InvalidStateTransition) as refused:
        rules.complete(ready, device_id="dev_1", policy=POLICY, now=late)
    assert refused.value.details["reason"] == "recovery_expired"


def test_a_recovery_with_the_passkey_of_a_device_already_bound_does_not_cool_off() -> None:
    on_phone = replace(_recovery(new_device=False), factors=("security_question", "passkey"))
    done = rules.complete(on_phone, device_id="dev_1", policy=POLICY, now=T0 + timedelta(minutes=3))
    assert done.cooling_until is None and not done.is_cooling(T0 + timedelta(minutes=4))


def test_no_cooling_off_when_the_policy_sets_it_to_zero() -> None:
    done = rules.complete(
        _recovery(), device_id="d", policy=RecoveryPolicy(cooling_off_s=0), now=T0
    )
    assert done.cooling_until is None


def test_a_held_recovery_completes_only_after_approval_and_never_after_denial() -> None:
    held = _recovery(held=True)
    with pytest.raises(InvalidStateTransition) as refused:
        rules.complete(held, device_id="d", policy=POLICY, now=T0 + timedelta(minutes=3))
    assert refused.value.details["reason"] == "recovery_held"
    approved = rules.decide(
        held, approve=True, operator="ops", reason="ok", now=T0 + timedelta(hours=2)
    )
    # the user has a day from the approval, not ten minutes from the factors
    done = rules.complete(approved, device_id="d", policy=POLICY, now=T0 + timedelta(hours=20))
    assert done.state is RecoveryState.COMPLETED
    denied = rules.decide(held, approve=False, operator="ops", reason="no", now=T0)
    with pytest.raises(InvalidStateTransition) as refused:
        rules.complete(denied, device_id="d", policy=POLICY, now=T0)
    assert refused.value.details["reason"] == "recovery_denied"
    with pytest.raises(InvalidStateTransition):
        rules.decide(approved, approve=False, operator="ops", reason="again", now=T0)
    with pytest.raises(InvalidStateTransition):
        rules.decide(_recovery(), approve=True, operator="ops", reason="not held", now=T0)


def test_reporting_is_final_and_idempotent() -> None:
    reported = rules.report(_recovery(), T0)
    assert reported.state is RecoveryState.REPORTED
    assert rules.report(reported, T0 + timedelta(hours=1)) is reported
    with pytest.raises(InvalidStateTransition):
        rules.complete(reported, device_id="d", policy=POLICY, now=T0)


# ---- who cools off ------------------------------------------------------------------------------


def test_only_devices_bound_before_the_recovery_began_are_trusted() -> None:
    r = _recovery()
    assert rules.is_trusted_device("dev_old", T0 - timedelta(seconds=1), True, r)
    assert not rules.is_trusted_device("dev_old", T0, True, r)  # bound as it began: not before
    assert not rules.is_trusted_device("dev_new", T0 + timedelta(minutes=5), True, r)
    assert not rules.is_trusted_device("dev_old", T0 - timedelta(days=3), False, r)  # removed
    assert not rules.is_trusted_device(None, None, True, r)
    # the device the recovery completed on is never trusted, however old (a copied key)
    done = rules.complete(r, device_id="dev_old", policy=POLICY, now=T0 + timedelta(minutes=3))
    assert not rules.is_trusted_device("dev_old", T0 - timedelta(days=30), True, done)


def test_only_a_recovery_with_the_bound_devices_passkey_skips_the_cooling_off() -> None:
    on_phone = replace(_recovery(new_device=False), factors=("security_question", "passkey"))
    assert not rules.cools_off(on_phone)
    # the device's key alone may be a copy: a recovery code + email on a bound key cools off
    assert rules.cools_off(_recovery(new_device=False))
    assert rules.cools_off(replace(on_phone, new_device=True))


def test_the_payment_ceiling_is_per_currency_and_a_currency_not_named_pays_nothing() -> None:
    assert rules.payment_allowed(POLICY, "EUR", 1000) == (True, 3000)
    assert rules.payment_allowed(POLICY, "EUR", 1001) == (False, 1000)
    assert rules.payment_allowed(POLICY, "KRW", 10000) == (True, 30000)
    assert rules.payment_allowed(POLICY, "CHF", 1) == (False, 0)
    # small payments add up: not past total_max_minor in all
    assert rules.payment_allowed(POLICY, "EUR", 1000, spent_minor=2000) == (True, 3000)
    assert rules.payment_allowed(POLICY, "EUR", 1, spent_minor=3000) == (False, 3000)


# ---- links --------------------------------------------------------------------------------------


def _link(**over: object) -> str:
    args: dict[str, object] = {
        "purpose": "not_me",
        "recovery_id": "rcv_1",
        "user_id": "usr_1",
        "nonce": b"n" * 16,
        "expires_at": T0 + timedelta(minutes=10),
        "mac": _mac,
    }
    args.update(over)
    return rules.make_link(**args)  # type: ignore[arg-type]


def _verify(token: object, owner: str | None = "usr_1", purpose: str = "not_me") -> rules.Link:
    return rules.verify_link(
        token, purpose=purpose, user_id_of=lambda _rid: owner, mac=_mac, tz=UTC
    )


def test_a_link_verifies_for_its_recovery_and_says_when_it_expires() -> None:
    link = _verify(_link())
    assert link.recovery_id == "rcv_1"
    assert link.expires_at == T0 + timedelta(minutes=10)
    assert not link.is_expired(T0 + timedelta(minutes=9)) and link.is_expired(
        T0 + timedelta(minutes=10)
    )


@pytest.mark.parametrize(
    "edit",
    [
        lambda p: [p[0], p[1], str(int(p[2]) + 60), p[3], p[4]],  # a later expiry
        lambda p: [p[0], "rcv_2", p[2], p[3], p[4]],  # another recovery
        lambda p: [p[0], p[1], p[2], "b29vb29vb29vb29vb29vbw", p[4]],  # another nonce
        lambda p: [p[0], p[1], p[2], p[3], p[4][:-2] + ("AA" if p[4][-2:] != "AA" else "BB")],
        lambda p: ["v2", *p[1:]],
    ],
)
def test_an_edited_link_is_refused(edit: object) -> None:
    parts = _link().split(".")
    bad = ".".join(edit(parts))  # type: ignore[operator]
    with pytest.raises(RecoveryLinkInvalid):
        _verify(bad)


def test_a_link_for_another_account_or_purpose_is_refused() -> None:
    with pytest.raises(RecoveryLinkInvalid):
        _verify(_link(), owner="usr_2")  # the recovery belongs to someone else
    with pytest.raises(RecoveryLinkInvalid):
        _verify(_link(), owner=None)  # no such recovery
    with pytest.raises(RecoveryLinkInvalid):
        _verify(_link(), purpose="something_else")


@pytest.mark.parametrize(
    "raw",
    [
        None,
        7,
        "",
        "a.b.c",
        "v1.r.notdigits.n.t",
        "v1.r.1.n.%%%",
        "x" * 300,
        "v1.rcv_x.\u00b2.AAAA.AAAA",  # a superscript two: a digit to str.isdigit, not to int()
        "v1.rcv_x.99999999999999999.AAAA.AAAA",
    ],
)
def test_malformed_links_are_refused_with_one_code(raw: object) -> None:
    with pytest.raises(RecoveryLinkInvalid) as refused:
        _verify(raw)
    assert refused.value.code == "recovery_link_invalid"


# ---- the [recovery] table ------------------------------------------------------------------------


def test_the_policy_table_has_defaults_and_bounds() -> None:
    assert rules.parse_recovery(None) == RecoveryPolicy()
    made = rules.parse_recovery(
        {"cooling_off_s": 3600, "link_ttl_s": 300, "payment_max_minor": {"EUR": 500}}
    )
    assert (made.cooling_off_s, made.link_ttl_s, dict(made.payment_max_minor)) == (
        3600,
        300,
        {"EUR": 500},
    )


@pytest.mark.parametrize(
    "table",
    [
        {"cooling_off_s": -1},
        {"cooling_off_s": 31 * 86400},
        {"cooling_off_s": True},
        {"link_ttl_s": 601},  # no email message lives longer than ten minutes
        {"link_ttl_s": 30},
        {"payment_max_minor": {"eur": 5}},
        {"payment_max_minor": {"EUR": -1}},
        {"payment_max_minor": []},
        {"surprise": 1},
        [],
    ],
)
def test_a_bad_policy_table_is_a_configuration_error(table: object) -> None:
    with pytest.raises(ConfigurationError):
        rules.parse_recovery(table)


def test_status_reads_the_state_until_it_lapses() -> None:
    held = _recovery(held=True)
    assert held.status(T0 + timedelta(days=3)) == "held"  # held never lapses on its own
    approved = replace(held, state=RecoveryState.APPROVED)
    assert approved.status(held.expires_at) == "expired"
