"""Recent strong authentication before sensitive actions, the session's AAL, and the factors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from zeropay.domain.errors import Forbidden, InvalidInput, RecentAuthRequired
from zeropay.domain.factors import (
    CATEGORIES,
    Factor,
    FactorCategory,
    categories_of,
    is_strong,
    parse_factor,
)
from zeropay.domain.sessions import (
    AuthMethod,
    Session,
    SessionPolicy,
    new_session,
    require_recent_auth,
)

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
AGE_S_MAX = 300  # the default policy's recent_auth_s


def ago(seconds: int) -> datetime:
    return NOW - timedelta(seconds=seconds)


def session(*methods: tuple[str, datetime]) -> Session:
    return new_session(
        session_id="session-1",
        user_id="user-1",
        methods=tuple(AuthMethod(factor, at) for factor, at in methods),
        now=min(at for _, at in methods),
        policy=SessionPolicy(),
    )


# ---- require_recent_auth -----------------------------------------------------------------------


def test_a_password_and_a_totp_code_within_300_seconds_pass():
    require_recent_auth(session(("password", ago(120)), ("totp", ago(100))), NOW, AGE_S_MAX)


def test_two_factors_exactly_300_seconds_old_still_pass():
    require_recent_auth(session(("password", ago(300)), ("totp", ago(300))), NOW, AGE_S_MAX)


def test_a_password_alone_is_refused_and_says_how_recent_it_must_be():
    with pytest.raises(RecentAuthRequired) as caught:
        require_recent_auth(session(("password", ago(10))), NOW, AGE_S_MAX)
    assert caught.value.details["age_s_max"] == AGE_S_MAX
    assert isinstance(caught.value, Forbidden)


def test_a_second_factor_301_seconds_old_is_refused():
    with pytest.raises(RecentAuthRequired):
        require_recent_auth(session(("totp", ago(301)), ("password", ago(10))), NOW, AGE_S_MAX)


def test_a_password_301_seconds_old_is_refused_even_with_a_fresh_second_factor():
    with pytest.raises(RecentAuthRequired):
        require_recent_auth(session(("password", ago(301)), ("totp", ago(10))), NOW, AGE_S_MAX)


def test_a_passkey_alone_passes_as_possession_and_inherence():
    require_recent_auth(session(("passkey", ago(30))), NOW, AGE_S_MAX)


def test_a_passkey_301_seconds_old_is_refused():
    with pytest.raises(RecentAuthRequired):
        require_recent_auth(session(("passkey", ago(301)), ("password", ago(10))), NOW, AGE_S_MAX)


@pytest.mark.parametrize(
    "factors",
    [
        ("password", "security_question"),  # two knowledge factors
        ("totp", "sms_otp"),  # two possession factors
        ("email_otp", "bound_device_approval"),
        ("password", "fingerprint"),  # a name outside the vocabulary proves nothing
    ],
)
def test_two_recent_factors_of_one_category_are_refused(factors):
    with pytest.raises(RecentAuthRequired):
        require_recent_auth(session(*((f, ago(10)) for f in factors)), NOW, AGE_S_MAX)


def test_a_strong_login_earlier_in_the_session_does_not_count_once_it_is_old():
    old_login = session(("password", ago(3600)), ("totp", ago(3600)), ("password", ago(5)))
    assert old_login.aal == 2
    with pytest.raises(RecentAuthRequired):
        require_recent_auth(old_login, NOW, AGE_S_MAX)


# ---- Session.aal -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("factors", "aal"),
    [
        (("password",), 1),
        (("password", "totp"), 2),
        (("password", "email_otp"), 2),
        (("passkey",), 2),
        (("device_key", "password"), 2),
        (("totp", "sms_otp"), 1),
        (("password", "security_question"), 1),
        (("password", "fingerprint"), 1),
    ],
)
def test_the_aal_is_2_exactly_when_the_methods_cover_two_categories(factors, aal):
    assert session(*((f, ago(10)) for f in factors)).aal == aal


def test_the_aal_does_not_depend_on_when_the_factors_were_used():
    assert session(("password", ago(86400)), ("totp", ago(10))).aal == 2


# ---- factors -----------------------------------------------------------------------------------


def test_every_factor_proves_at_least_one_category():
    assert set(CATEGORIES) == set(Factor)
    assert all(CATEGORIES[f] for f in Factor)


def test_no_factor_is_a_biometric_alone():
    # NIST 800-63B: a biometric only together with a physical authenticator.
    assert all(cats != {FactorCategory.INHERENCE} for cats in CATEGORIES.values())
    assert CATEGORIES[Factor.PASSKEY] == {FactorCategory.POSSESSION, FactorCategory.INHERENCE}


def test_parse_factor_accepts_known_names_only():
    assert parse_factor("totp") is Factor.TOTP
    for raw in ("TOTP", "fingerprint", "", None, 3):
        with pytest.raises(InvalidInput) as caught:
            parse_factor(raw)
        assert caught.value.details["field"] == "factor"


def test_categories_of_ignores_names_outside_the_vocabulary():
    assert categories_of(["password", "retina"]) == {FactorCategory.KNOWLEDGE}


def test_is_strong_needs_two_different_categories():
    assert is_strong(["password", "totp"])
    assert is_strong(["passkey"])
    assert not is_strong(["password", "security_question"])
    assert not is_strong(["totp", "email_otp", "sms_otp"])
    assert not is_strong([])
