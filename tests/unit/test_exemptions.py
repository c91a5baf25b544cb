"""SCA exemptions (PSD2 RTS Art. 13, 14, 16, 18): the sequences the issue names, on both shipped
profiles, and which exemption applied or why SCA was required."""

from __future__ import annotations

from dataclasses import replace

import pytest

from zeropay.bootstrap import load_exemption_profile
from zeropay.domain.errors import ConfigurationError
from zeropay.domain.exemptions import (
    AFTER_SCA,
    Counters,
    Exemption,
    FraudStanding,
    LowValueRule,
    ScaReason,
    Series,
    decide,
    parse_profile,
)
from zeropay.domain.money import parse_money

PSD2 = load_exemption_profile("psd2")
DEFAULT = load_exemption_profile("default")
COUNT = replace(PSD2, low_value_rule=LowValueRule.COUNT)
CUMULATIVE = replace(PSD2, low_value_rule=LowValueRule.CUMULATIVE)


def eur(minor: int):
    return parse_money(minor, "EUR")


def krw(won: int):
    return parse_money(won, "KRW")


def _run(profile, amounts):
    """Pay each amount in turn; an SCA (when asked) resets the counters. The decisions."""
    counters, out = Counters(), []
    for amount in amounts:
        d = decide(profile, amount, "mer_cafe", counters=counters)
        out.append(d)
        counters = counters.after_exempt(amount) if d.exempt else AFTER_SCA
    return out


def test_the_shipped_profiles_choose_count_for_psd2_and_cumulative_for_default():
    assert PSD2.low_value_rule is LowValueRule.COUNT and PSD2.count_max == 5
    assert DEFAULT.low_value_rule is LowValueRule.CUMULATIVE
    assert PSD2.ceiling_minor["EUR"] == 3000 and PSD2.cumulative_minor["EUR"] == 10000
    assert set(PSD2.ceiling_minor) >= {"EUR", "KRW", "JPY", "USD", "GBP"}


def test_six_eur_10_payments_under_the_count_rule_the_sixth_asks_for_sca():
    decided = _run(COUNT, [eur(1000)] * 6)
    assert [d.exemption for d in decided[:5]] == [Exemption.LOW_VALUE] * 5
    assert decided[5].exemption is None
    assert decided[5].sca_reasons[0] is ScaReason.COUNT_REACHED


def test_after_the_sca_the_count_starts_again():
    decided = _run(COUNT, [eur(1000)] * 12)
    exempt = [d.exempt for d in decided]
    assert exempt == [True] * 5 + [False] + [True] * 5 + [False]


def test_eur_40_always_asks_for_sca_even_right_after_one():
    for profile in (COUNT, CUMULATIVE):
        decided = _run(profile, [eur(4000)] * 3)
        assert all(d.sca_reasons[0] is ScaReason.ABOVE_CEILING for d in decided)


def test_eur_30_exactly_is_still_low_value_and_one_cent_more_is_not():
    assert decide(COUNT, eur(3000), "m", counters=Counters()).exempt
    assert not decide(COUNT, eur(3001), "m", counters=Counters()).exempt


def test_a_cumulative_eur_101_asks_for_sca_and_exactly_100_does_not():
    decided = _run(CUMULATIVE, [eur(3000), eur(3000), eur(3000), eur(1000), eur(100)])
    assert [d.exempt for d in decided] == [True, True, True, True, False]
    assert decided[-1].sca_reasons[0] is ScaReason.CUMULATIVE_REACHED
    # Under the count rule the same five payments are all exempt: the rules differ.
    assert all(d.exempt for d in _run(COUNT, [eur(3000)] * 3 + [eur(1000), eur(100)]))


def test_after_sca_the_cumulative_counter_resets():
    decided = _run(CUMULATIVE, [eur(3000)] * 4 + [eur(3000)] * 4)
    assert [d.exempt for d in decided] == [True, True, True, False, True, True, True, False]


def test_the_same_sequences_in_won():
    ceiling, cap = PSD2.ceiling_minor["KRW"], PSD2.cumulative_minor["KRW"]
    decided = _run(COUNT, [krw(10_000)] * 6)
    assert [d.exempt for d in decided] == [True] * 5 + [False]
    assert not decide(COUNT, krw(ceiling + 1), "m", counters=Counters()).exempt
    under = cap // ceiling  # full-ceiling payments that fit under the cumulative cap
    decided = _run(CUMULATIVE, [krw(ceiling)] * (under + 1))
    assert [d.exempt for d in decided] == [True] * under + [False]


def test_the_cumulative_rule_sums_every_currency_and_the_count_rule_counts_every_payment():
    counters = Counters().after_exempt(eur(3000)).after_exempt(eur(3000)).after_exempt(eur(3000))
    # EUR 90 spent, then KRW 14,000 (EUR 10 at the profile's rate) fits; KRW 14,001 does not:
    # a payer cannot spend EUR 100 in each currency without SCA.
    assert decide(CUMULATIVE, krw(14_000), "m", counters=counters).exempt
    over = decide(CUMULATIVE, krw(14_001), "m", counters=counters)
    assert over.sca_reasons[0] is ScaReason.CUMULATIVE_REACHED
    # A currency the profile cannot convert is held to its own cap only.
    no_rate = replace(CUMULATIVE, tra_minor_per_unit={})
    assert decide(no_rate, krw(40_000), "m", counters=counters).exempt
    counters = Counters(count=5)
    assert not decide(COUNT, krw(1_000), "m", counters=counters).exempt


def test_a_risk_challenge_overrides_every_exemption():
    d = decide(
        PSD2,
        eur(100),
        "m",
        counters=Counters(),
        trusted_payees=frozenset({"m"}),
        risk_challenge=True,
    )
    assert (d.exemption, d.sca_reasons) == (None, (ScaReason.RISK,))


def test_a_trusted_beneficiary_skips_sca_above_the_ceiling_and_others_do_not():
    trusted = frozenset({"mer_landlord"})
    assert (
        decide(
            PSD2, eur(4500), "mer_landlord", counters=Counters(count=9), trusted_payees=trusted
        ).exemption
        is Exemption.TRUSTED_BENEFICIARY
    )
    assert not decide(
        PSD2, eur(4500), "mer_other", counters=Counters(), trusted_payees=trusted
    ).exempt


def test_recurring_needs_the_same_amount_and_payee_and_an_sca_on_the_first():
    series = Series(payee="mer_gym", amount=eur(4500), first_had_sca=True)
    d = decide(PSD2, eur(4500), "mer_gym", counters=Counters(count=9), series=series)
    assert d.exemption is Exemption.RECURRING
    assert not decide(PSD2, eur(4600), "mer_gym", counters=Counters(), series=series).exempt
    assert not decide(PSD2, eur(4500), "mer_pool", counters=Counters(), series=series).exempt
    unproven = replace(series, first_had_sca=False)
    assert not decide(PSD2, eur(4500), "mer_gym", counters=Counters(), series=unproven).exempt


@pytest.mark.parametrize(
    ("amount_minor", "rate", "quarters", "exempt"),
    [
        (5_000, 0.0012, 0, True),  # up to EUR 100: under 0.13 %
        (5_000, 0.0013, 0, False),  # at the reference rate: not under it
        (20_000, 0.0005, 0, True),  # up to EUR 250: under 0.06 %
        (20_000, 0.0007, 0, False),
        (45_000, 0.00009, 0, True),  # up to EUR 500: under 0.01 %
        (60_000, 0.0, 0, False),  # above the highest band: never
        (5_000, 0.0001, 2, False),  # two quarters above: off (Art. 20)
        (5_000, 0.0001, 1, True),
    ],
)
def test_transaction_risk_analysis_follows_the_fraud_rate_of_the_band(
    amount_minor, rate, quarters, exempt
):
    counters = Counters(count=5)  # low value used up
    d = decide(
        PSD2,
        eur(amount_minor),
        "m",
        counters=counters,
        fraud=FraudStanding(rate_90d=rate, quarters_above=quarters),
        amount_in_tra_currency_minor=amount_minor,
    )
    assert (d.exemption is Exemption.TRANSACTION_RISK_ANALYSIS) is exempt
    if not exempt:
        assert ScaReason.TRA_OFF in d.sca_reasons


@pytest.mark.parametrize(
    ("doc", "key"),
    [
        ({"low_value": {"rule": "sometimes"}}, "low_value.rule"),
        ({"low_value": {"count_max": 0}}, "low_value.count_max"),
        ({"low_value": {"ceiling_minor": {"eur": 3000}}}, "low_value.ceiling_minor.eur"),
        ({"low_value": {"ceiling_minor": {"EUR": -1}}}, "low_value.ceiling_minor.EUR"),
        (
            {"low_value": {"rule": "cumulative", "ceiling_minor": {"EUR": 3000}}},
            "low_value.cumulative_minor",
        ),
        ({"tra": {"bands": [{"ceiling_minor": 100, "reference_rate": 2.0}]}}, "tra.bands[0]"),
    ],
)
def test_a_bad_profile_is_refused_naming_the_key(doc, key):
    with pytest.raises(ConfigurationError, match=key.replace("[", r"\[").replace("]", r"\]")):
        parse_profile("custom", doc)


def test_an_unknown_profile_name_is_refused():
    with pytest.raises(ConfigurationError):
        load_exemption_profile("lenient")
