"""SCA exemptions end to end (PSD2 RTS Art. 13, 14, 16): the sequences of issue 5 in EUR and in
KRW, over HTTP on SQLite and PostgreSQL, under the shipped ``psd2`` (low value by count) and
``default`` (low value by cumulative amount) profiles with the risk engine off, so every
decision is the exemptions' own.

Each payment is confirmed from the payer's bound phone; when SCA is asked, the payer answers the
confirmation flow with the passkey or with the device key and the password, and the counters
since the last SCA are read back from ``GET /v1/me/sca``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from support import sca
from support.mfa import Device, Mfa
from support.webauthn_soft import b64url_decode
from zeropay.bootstrap import load_exemption_profile
from zeropay.services import payments


@dataclass(frozen=True)
class Figures:
    """One currency's amounts, in minor units."""

    code: str
    small: int  # a low-value payment a phone may make on its first day
    ceiling: int  # the low-value ceiling per payment (Art. 16(a))
    above: int  # over that ceiling
    cumulative: int  # the cumulative low-value amount since the last SCA (Art. 16(b))
    unit: int  # one unit of the currency: the step that crosses the cumulative sum


EUR = Figures("EUR", small=1_000, ceiling=3_000, above=4_000, cumulative=10_000, unit=100)
KRW = Figures("KRW", small=10_000, ceiling=42_000, above=50_000, cumulative=140_000, unit=1_000)
FUNDS = {"EUR": 60_000, "KRW": 1_000_000}  # a month's worth (the monthly limits)


@pytest.fixture(params=[EUR, KRW], ids=["EUR", "KRW"])
def money(request: pytest.FixtureRequest) -> Figures:
    return request.param


def _payer(mfa: Mfa, email: str) -> Device:
    return sca.payer(mfa, email, **FUNDS)


def _passed(r) -> dict:
    """The answer to a confirmation flow's last step: the flow is complete and paid."""
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["flow"]["status"] == "complete", body
    assert body["payment"]["status"] == "succeeded", body
    return dict(body["payment"])


def _since_last_sca(phone: Device) -> tuple[int, dict[str, int]]:
    seen = sca.standing(phone)["since_last_sca"]
    return seen["exempt_payments"], seen["spent"]


def test_the_figures_these_tests_use_are_the_shipped_profiles():
    for name in ("psd2", "default"):
        profile = load_exemption_profile(name)
        for f in (EUR, KRW):
            assert profile.ceiling_minor[f.code] == f.ceiling
            assert profile.cumulative_minor[f.code] == f.cumulative
            assert f.small <= f.ceiling < f.above
    assert load_exemption_profile("psd2").low_value_rule.value == "count"
    assert load_exemption_profile("psd2").count_max == 5
    assert load_exemption_profile("default").low_value_rule.value == "cumulative"


# ---- low value by count (psd2): five exempt, the sixth asks --------------------------------------


def test_under_the_count_rule_five_low_value_payments_are_exempt_and_the_sixth_asks_for_sca(
    psd2, money
):
    phone = _payer(psd2, "ana@example.com")
    cafe = sca.shop(psd2, "Corner Cafe")
    left = []
    for _ in range(5):
        r = sca.confirm(phone, sca.bill(psd2, cafe, money.small, money.code))
        assert sca.exemption_of(r) == "low_value"
        left.append(sca.standing(phone)["low_value"]["exempt_payments_left"])
    assert left == [4, 3, 2, 1, 0]
    sixth = sca.bill(psd2, cafe, money.small, money.code)
    r = sca.confirm(phone, sixth)
    assert sca.reasons_of(r)[0] == "low_value_count_reached"
    assert r.json()["authentication"]["exemption"] is None
    # Nothing moved yet: the sixth payment's money is held while the payer answers.
    assert sca.wallet(phone, money.code) == (FUNDS[money.code] - 6 * money.small, money.small)
    assert _since_last_sca(phone) == (5, {money.code: 5 * money.small})


def test_after_sca_passes_the_count_starts_again_from_zero(psd2, money):
    phone = _payer(psd2, "bo@example.com")
    cafe = sca.shop(psd2, "Corner Cafe")
    for _ in range(5):
        assert sca.exemption_of(sca.confirm(phone, sca.bill(psd2, cafe, money.small, money.code)))
    sixth = sca.bill(psd2, cafe, money.small, money.code)
    flow = sca.flow_of(sca.confirm(phone, sixth))
    # EUR is answered with the passkey, KRW with the device key and the password.
    if money.code == "EUR":
        paid = _passed(sca.answer_with_passkey(psd2, phone, flow))
    else:
        paid = _passed(sca.answer_with_device_key(psd2, phone, flow))
    assert paid["id"] == sixth
    seen = sca.standing(phone)
    assert seen["since_last_sca"]["exempt_payments"] == 0
    assert seen["since_last_sca"]["spent"] == {}
    assert seen["since_last_sca"]["last_sca_at"] is not None
    assert seen["low_value"]["exempt_payments_left"] == 5
    assert sca.decision_of(phone, sixth)["outcome"] == "authenticated"
    # Five more may skip it again, and the sixth after them asks again.
    for _ in range(5):
        assert (
            sca.exemption_of(sca.confirm(phone, sca.bill(psd2, cafe, money.small, money.code)))
            == "low_value"
        )
    r = sca.confirm(phone, sca.bill(psd2, cafe, money.small, money.code))
    assert sca.reasons_of(r)[0] == "low_value_count_reached"
    assert sca.wallet(phone, money.code)[0] == FUNDS[money.code] - 12 * money.small


def test_a_failed_or_abandoned_sca_does_not_reset_the_counters(psd2, clock, money):
    email = "cy@example.com"
    phone = _payer(psd2, email)
    cafe = sca.shop(psd2, "Corner Cafe")
    for _ in range(5):
        assert sca.exemption_of(sca.confirm(phone, sca.bill(psd2, cafe, money.small, money.code)))
    # Failed: five answers without the payer's finger (no user verification).
    failed = sca.bill(psd2, cafe, money.small, money.code)
    flow = sca.flow_of(sca.confirm(phone, failed))
    for _ in range(5):
        made = sca.assertion(phone, sca.options(phone, flow["id"]), user_verified=False)
        r = sca.passkey(psd2, phone, flow["id"], made)
        assert r.status_code == 401, r.text
    assert sca.view(phone, flow["id"])["status"] == "failed"
    assert sca.decision_of(phone, failed)["outcome"] == "failed"
    assert _since_last_sca(phone) == (5, {money.code: 5 * money.small})
    assert sca.standing(phone)["since_last_sca"]["last_sca_at"] is None
    # Abandoned: the payer walks away from the next one and its flow expires.
    abandoned = sca.bill(psd2, cafe, money.small, money.code)
    r = sca.confirm(phone, abandoned)
    assert sca.reasons_of(r)[0] == "low_value_count_reached"
    clock.advance(seconds=301)
    assert payments.expire_holds(psd2.container.ctx) == 1
    sca.sign_in_with_passkey(psd2, phone, email)  # the session ended after 5 idle minutes
    assert sca.decision_of(phone, abandoned)["outcome"] == "failed"
    assert _since_last_sca(phone) == (5, {money.code: 5 * money.small})
    # Still no exemption left: the next low-value payment asks again, with the same reason.
    r = sca.confirm(phone, sca.bill(psd2, cafe, money.small, money.code))
    assert sca.reasons_of(r)[0] == "low_value_count_reached"
    assert sca.wallet(phone, money.code) == (FUNDS[money.code] - 6 * money.small, money.small)


# ---- above the ceiling: always SCA ---------------------------------------------------------------


def test_a_payment_above_the_low_value_ceiling_always_asks_for_sca_even_straight_after_one(
    psd2, clock, money
):
    phone = _payer(psd2, "di@example.com")
    sca.season(psd2, clock, (phone, "di@example.com"))
    shop = sca.shop(psd2, "Book Shop")
    first = sca.bill(psd2, shop, money.above, money.code)
    r = sca.confirm(phone, first)
    assert sca.reasons_of(r)[0] == "above_low_value_ceiling"
    assert _passed(sca.answer_with_passkey(psd2, phone, sca.flow_of(r)))["id"] == first
    assert _since_last_sca(phone) == (0, {})
    # Straight after an SCA, with every low-value exemption left, it asks again.
    second = sca.bill(psd2, shop, money.above, money.code)
    r = sca.confirm(phone, second)
    assert sca.reasons_of(r)[0] == "above_low_value_ceiling"
    assert _passed(sca.answer_with_device_key(psd2, phone, sca.flow_of(r)))["id"] == second
    # The ceiling itself is low value.
    r = sca.confirm(phone, sca.bill(psd2, shop, money.ceiling, money.code))
    assert sca.exemption_of(r) == "low_value"
    assert sca.wallet(phone, money.code) == (
        FUNDS[money.code] - 2 * money.above - money.ceiling,
        0,
    )


# ---- low value by cumulative amount (default): the payment that crosses asks ---------------------


def test_under_the_cumulative_rule_the_payment_that_crosses_the_sum_asks_and_sca_resets_it(
    cumulative, clock, money
):
    mfa = cumulative
    phone = _payer(mfa, "ed@example.com")
    sca.season(mfa, clock, (phone, "ed@example.com"))
    shop = sca.shop(mfa, "Book Shop")
    # Up to the sum exactly: three at the ceiling and the rest.
    parts = [money.ceiling] * 3 + [money.cumulative - 3 * money.ceiling]
    for amount in parts:
        assert sca.exemption_of(sca.confirm(phone, sca.bill(mfa, shop, amount, money.code)))
    seen = sca.standing(phone)
    assert seen["low_value"]["amount_left"][money.code] == 0
    assert seen["since_last_sca"]["spent"] == {money.code: money.cumulative}
    # One unit more (EUR 101 in all) crosses it.
    crossing = sca.bill(mfa, shop, money.unit, money.code)
    r = sca.confirm(phone, crossing)
    assert sca.reasons_of(r)[0] == "low_value_cumulative_reached"
    assert _passed(sca.answer_with_device_key(mfa, phone, sca.flow_of(r)))["id"] == crossing
    seen = sca.standing(phone)
    assert seen["since_last_sca"]["spent"] == {}
    assert seen["low_value"]["amount_left"][money.code] == money.cumulative
    # Counted afresh: up to the sum again without SCA.
    for amount in parts:
        assert sca.exemption_of(sca.confirm(phone, sca.bill(mfa, shop, amount, money.code)))
    r = sca.confirm(phone, sca.bill(mfa, shop, money.unit, money.code))
    assert sca.reasons_of(r)[0] == "low_value_cumulative_reached"


def test_under_the_cumulative_rule_many_small_payments_stay_exempt_until_the_sum(cumulative, money):
    mfa = cumulative
    phone = _payer(mfa, "fi@example.com")
    cafe = sca.shop(mfa, "Corner Cafe")
    # More than five payments: the count does not matter under this rule, only the sum.
    n = money.cumulative // money.small
    assert n > 5
    for _ in range(n):
        assert sca.exemption_of(sca.confirm(phone, sca.bill(mfa, cafe, money.small, money.code)))
    r = sca.confirm(phone, sca.bill(mfa, cafe, money.unit, money.code))
    assert sca.reasons_of(r)[0] == "low_value_cumulative_reached"
    assert _since_last_sca(phone) == (n, {money.code: money.cumulative})


# ---- trusted beneficiaries (Art. 13) ---------------------------------------------------------------


def test_a_payee_is_trusted_only_after_a_recent_strong_sign_in_and_then_skips_sca(
    psd2, clock, money
):
    email = "gu@example.com"
    phone = _payer(psd2, email)
    sca.season(psd2, clock, (phone, email))
    shop, other = sca.shop(psd2, "Book Shop"), sca.shop(psd2, "Music Shop")
    # The session is alive (used a few minutes ago) but its passkey sign-in is 400 s old.
    clock.advance(seconds=200)
    assert phone.call("GET", "/v1/wallet").status_code == 200
    clock.advance(seconds=200)
    r = phone.call("POST", "/v1/me/trusted-beneficiaries", {"merchant_id": shop.id})
    assert r.status_code == 403 and r.json()["code"] == "recent_auth_required", r.text
    assert sca.standing(phone)["trusted_beneficiaries"] == []
    psd2.step_up_with_passkey(phone)
    r = phone.call("POST", "/v1/me/trusted-beneficiaries", {"merchant_id": shop.id})
    assert r.status_code == 201, r.text
    [trusted] = sca.standing(phone)["trusted_beneficiaries"]
    assert (trusted["merchant_id"], trusted["name"]) == (shop.id, "Book Shop")
    # Above the low-value ceiling, to the trusted payee: no SCA.
    r = sca.confirm(phone, sca.bill(psd2, shop, money.above, money.code))
    assert sca.exemption_of(r) == "trusted_beneficiary"
    # Another payee is not covered.
    r = sca.confirm(phone, sca.bill(psd2, other, money.above, money.code))
    assert sca.reasons_of(r)[0] == "above_low_value_ceiling"
    # Removed: SCA again.
    r = phone.call("DELETE", f"/v1/me/trusted-beneficiaries/{shop.id}")
    assert r.status_code == 204, r.text
    assert sca.standing(phone)["trusted_beneficiaries"] == []
    r = sca.confirm(phone, sca.bill(psd2, shop, money.above, money.code))
    assert sca.reasons_of(r)[0] == "above_low_value_ceiling"


def test_a_payee_can_be_trusted_right_after_a_passkey_sign_in(psd2, clock, money):
    email = "ha@example.com"
    phone = _payer(psd2, email)
    shop = sca.shop(psd2, "Book Shop")
    clock.advance(seconds=25 * 3600)
    sca.sign_in_with_passkey(psd2, phone, email)
    r = phone.call("POST", "/v1/me/trusted-beneficiaries", {"merchant_id": shop.id})
    assert r.status_code == 201, r.text
    r = phone.call("POST", "/v1/me/trusted-beneficiaries", {"merchant_id": shop.id})
    assert r.status_code == 200, r.text  # already trusted: nothing changes
    r = sca.confirm(phone, sca.bill(psd2, shop, money.above, money.code))
    assert sca.exemption_of(r) == "trusted_beneficiary"
    # Another payer has not trusted it.
    other = _payer(psd2, "io@example.com")
    sca.season(psd2, clock, (other, "io@example.com"))
    r = sca.confirm(other, sca.bill(psd2, shop, money.above, money.code))
    assert sca.reasons_of(r)[0] == "above_low_value_ceiling"


def test_trusting_an_unknown_merchant_is_refused(psd2):
    email = "ja@example.com"
    phone = _payer(psd2, email)
    sca.sign_in_with_passkey(psd2, phone, email)
    r = phone.call("POST", "/v1/me/trusted-beneficiaries", {"merchant_id": "mer_nobody"})
    assert r.status_code == 404, r.text
    r = phone.call("DELETE", "/v1/me/trusted-beneficiaries/mer_nobody")
    assert r.status_code == 404, r.text
    assert sca.standing(phone)["trusted_beneficiaries"] == []


# ---- recurring series (Art. 14) ------------------------------------------------------------------


def test_a_recurring_series_asks_for_sca_on_its_first_payment_only(psd2, clock, money):
    ana, bo = "ka@example.com", "lu@example.com"
    phone, someone = _payer(psd2, ana), _payer(psd2, bo)
    sca.season(psd2, clock, (phone, ana), (someone, bo))
    gym, other_gym = sca.shop(psd2, "Gym"), sca.shop(psd2, "Other Gym")
    first = sca.bill(psd2, gym, money.above, money.code, series_ref="plan-1")
    r = sca.confirm(phone, first)
    assert sca.reasons_of(r)[0] == "above_low_value_ceiling"
    assert _passed(sca.answer_with_passkey(psd2, phone, sca.flow_of(r)))["id"] == first
    # The same amount to the same payee in that series: exempt.
    for _ in range(2):
        r = sca.confirm(phone, sca.bill(psd2, gym, money.above, money.code, series_ref="plan-1"))
        assert sca.exemption_of(r) == "recurring"
    # Another amount in the series, the same amount in another series or at another payee that
    # uses the same reference, or another payer: SCA.
    for payee, amount, ref in (
        (gym, money.above + money.unit, "plan-1"),
        (gym, money.above, "plan-2"),
        (other_gym, money.above, "plan-1"),
    ):
        r = sca.confirm(phone, sca.bill(psd2, payee, amount, money.code, series_ref=ref))
        assert sca.reasons_of(r)[0] == "above_low_value_ceiling", (payee, amount, ref)
    r = sca.confirm(someone, sca.bill(psd2, gym, money.above, money.code, series_ref="plan-1"))
    assert sca.reasons_of(r)[0] == "above_low_value_ceiling"


def test_a_series_whose_first_sca_failed_is_not_established(psd2, clock, money):
    email = "mo@example.com"
    phone = _payer(psd2, email)
    sca.season(psd2, clock, (phone, email))
    gym = sca.shop(psd2, "Gym")
    first = sca.bill(psd2, gym, money.above, money.code, series_ref="plan-1")
    flow = sca.flow_of(sca.confirm(phone, first))
    # The device key signs, then the password is wrong five times: the flow fails.
    data = b64url_decode(sca.view(phone, flow["id"])["transaction"]["canonical"])
    assert sca.device_key(psd2, phone, flow["id"], data).status_code == 200
    for _ in range(5):
        r = psd2.step(phone, flow["id"], "password", password="not the password at all")
        assert r.status_code == 401, r.text
    assert sca.view(phone, flow["id"])["status"] == "failed"
    r = sca.confirm(phone, sca.bill(psd2, gym, money.above, money.code, series_ref="plan-1"))
    assert sca.reasons_of(r)[0] == "above_low_value_ceiling"


# ---- what the payer sees ---------------------------------------------------------------------------


def test_every_decision_is_shown_to_its_payer_with_its_exemption_or_reasons_and_to_no_one_else(
    psd2, money
):
    phone, other = _payer(psd2, "ni@example.com"), _payer(psd2, "ol@example.com")
    cafe = sca.shop(psd2, "Corner Cafe")
    exempt = [sca.bill(psd2, cafe, money.small, money.code) for _ in range(5)]
    for payment_id in exempt:
        sca.exemption_of(sca.confirm(phone, payment_id))
    asked = sca.bill(psd2, cafe, money.small, money.code)
    flow = sca.flow_of(sca.confirm(phone, asked))
    shown = {d["payment_id"]: d for d in sca.standing(phone)["decisions"]}
    assert set(shown) == {*exempt, asked}
    for payment_id in exempt:
        d = shown[payment_id]
        assert (d["exemption"], d["sca_required"], d["reasons"], d["outcome"]) == (
            "low_value",
            False,
            [],
            "exempt",
        )
        assert d["profile"] == "psd2"
    d = shown[asked]
    assert (d["exemption"], d["sca_required"], d["outcome"]) == (None, True, "challenged")
    assert d["reasons"][0] == "low_value_count_reached"
    _passed(sca.answer_with_passkey(psd2, phone, flow))
    assert sca.decision_of(phone, asked)["outcome"] == "authenticated"
    # The other payer sees only their own.
    mine = sca.bill(psd2, cafe, money.small, money.code)
    sca.exemption_of(sca.confirm(other, mine))
    theirs = sca.standing(other)
    assert [d["payment_id"] for d in theirs["decisions"]] == [mine]
    assert theirs["since_last_sca"]["exempt_payments"] == 1
    assert theirs["low_value"]["exempt_payments_left"] == 4
