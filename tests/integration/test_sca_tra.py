"""Transaction risk analysis (PSD2 RTS Art. 18) as a confirmation decides it, on SQLite and
PostgreSQL: a payment above the low-value ceiling skips SCA only when the risk engine saw nothing
abnormal, the platform's fraud feed is fresh, and its 90-day fraud rate is under the reference
rate of the payment's band; fraud reported above that rate brings SCA back."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from zeropay.bootstrap import load_exemption_profile
from zeropay.domain.exemptions import Exemption, ScaReason
from zeropay.services import fraud, sca
from zeropay.services.context import AppContext

PSD2 = load_exemption_profile("psd2")
DAY = datetime(2026, 10, 20, 12, 0, tzinfo=UTC)
_numbers = itertools.count()


def _payer(api) -> dict[str, str]:
    return dict(api.payer(f"payer{next(_numbers)}@example.com"))


def _paid(api, merchant: dict[str, str], amount: int) -> str:
    payer = _payer(api)
    r = api.client.post(
        "/v1/wallet/topups", headers=payer, json={"amount": amount, "currency": "EUR"}
    )
    assert r.status_code == 201, r.text
    payment = api.client.post(
        "/v1/payments",
        headers=merchant,
        json={"amount": amount, "currency": "EUR", "description": "Groceries"},
    ).json()
    r = api.client.post(f"/v1/checkout/{payment['id']}/confirm", headers=payer)
    assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
    return str(payment["id"])


def _decided(ctx: AppContext, api, merchant: dict[str, str], amount: int, *, clean: bool):
    """The SCA decision for a fresh payment of ``amount``, as a confirmation would make it."""
    payer = _payer(api)
    payment_id = api.client.post(
        "/v1/payments",
        headers=merchant,
        json={"amount": amount, "currency": "EUR", "description": "Groceries"},
    ).json()["id"]
    payer_id = api.client.get("/v1/me", headers=payer).json()["id"]

    def work(uow):
        payment = uow.payments.get(payment_id)
        return sca.decide_for(ctx, uow, payment, payer_id, risk_challenge=False, risk_clean=clean)

    decided = ctx.run(work)
    assert decided is not None
    return decided.decision


@pytest.fixture
def psd2_ctx(container, clock) -> AppContext:
    clock.at = DAY
    return replace(container.ctx, exemptions=PSD2)


def test_a_payment_above_the_low_value_ceiling_skips_sca_under_tra_only_when_everything_allows(
    api, container, clock, psd2_ctx
):
    merchant = api.merchant()
    for _ in range(4):
        _paid(api, merchant, 5_000)  # EUR 200 of volume on the day
    # No closed day yet: the rate is unknown, so TRA is off.
    off = _decided(psd2_ctx, api, merchant, 4_000, clean=True)
    assert off.exemption is None
    assert off.sca_reasons == (ScaReason.ABOVE_CEILING, ScaReason.TRA_OFF)
    clock.at = DAY + timedelta(days=1)
    fraud.close_periods(container.ctx)
    # A fresh feed with no fraud, and the engine saw nothing: EUR 40 skips SCA.
    assert _decided(psd2_ctx, api, merchant, 4_000, clean=True).exemption is (
        Exemption.TRANSACTION_RISK_ANALYSIS
    )
    # The same payment with any risk signal at all asks for SCA.
    assert _decided(psd2_ctx, api, merchant, 4_000, clean=False).exemption is None


def test_fraud_reported_above_the_reference_rate_brings_sca_back(api, container, clock, psd2_ctx):
    merchant = api.merchant()
    paid = [_paid(api, merchant, 5_000) for _ in range(4)]
    clock.at = DAY + timedelta(days=1)
    fraud.report_from_cli(
        container.ctx,
        payment_id=paid[0],
        kind="chargeback",
        amount_minor=None,
        reason="the card holder's bank says it was not them",
        actor="test",
    )
    clock.at = DAY + timedelta(days=2)
    fraud.close_periods(container.ctx)
    # EUR 50 of EUR 200 is 25 %, far above 0.13 % (the band up to EUR 100).
    decision = _decided(psd2_ctx, api, merchant, 4_000, clean=True)
    assert decision.exemption is None
    assert ScaReason.TRA_OFF in decision.sca_reasons
