"""The authentication policy: the shipped file, every documented mistake, and path planning."""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import zeropay
from zeropay.domain.errors import ConfigurationError
from zeropay.domain.factors import Factor
from zeropay.domain.policy import AccessPoint, AuthPolicy, parse_policy, plan_paths

DEFAULT_TOML = Path(zeropay.__file__).parent / "policies" / "default.toml"

F = Factor
PASSWORD, TOTP, PASSKEY, EMAIL, SMS = F.PASSWORD, F.TOTP, F.PASSKEY, F.EMAIL_OTP, F.SMS_OTP
APPROVAL = F.BOUND_DEVICE_APPROVAL


def shipped_document() -> dict[str, Any]:
    with DEFAULT_TOML.open("rb") as f:
        return tomllib.load(f)


def valid_document() -> dict[str, Any]:
    """The shipped document with recovery paths known to be valid, so that a defect in the
    shipped recovery table fails the one test about the shipped file and not every test here."""
    doc = shipped_document()
    doc["points"]["recovery"] = {
        "paths": [["security_question", "passkey"], ["recovery_code", "password"]]
    }
    return doc


def policy(**top: Any) -> AuthPolicy:
    doc = valid_document()
    doc.update(top)
    return parse_policy(doc)


# ---- the shipped file --------------------------------------------------------------------------


def test_the_shipped_default_policy_parses():
    parsed = parse_policy(shipped_document())
    assert set(parsed.points) == set(AccessPoint)
    assert parsed.recent_auth_s == 300  # ASVS: re-authentication before sensitive changes
    assert parsed.require_dpop is True
    assert parsed.sms_alone_allowed is False  # NIST 800-63B §5.1.3.3
    assert parsed.code_ttl_s <= 600  # NIST 800-63B §5.1.3.2
    assert all(rule.attempts_max <= 5 for rule in parsed.points.values())  # RTS Art. 4(3)(b)


def test_the_valid_test_document_differs_from_the_shipped_one_only_in_recovery():
    shipped, valid = shipped_document(), valid_document()
    del shipped["points"]["recovery"], valid["points"]["recovery"]
    assert shipped == valid


def test_a_parsed_policy_keeps_the_paths_in_order_and_the_waivable_factors():
    parsed = policy()
    assert parsed.point(AccessPoint.LOGIN).paths[:2] == ((PASSKEY,), (PASSWORD, TOTP))
    registration = parsed.point(AccessPoint.DEVICE_REGISTRATION)
    assert registration.paths == ((EMAIL, PASSKEY, APPROVAL), (EMAIL, PASSWORD, F.PIN, APPROVAL))
    assert registration.waived_when_unavailable == frozenset({APPROVAL})
    assert parsed.point(AccessPoint.STEP_UP).ttl_s == 300


# ---- every documented mistake ------------------------------------------------------------------

Edit = Callable[[dict[str, Any]], None]


def set_top(key: str, value: object) -> Edit:
    return lambda doc: doc.__setitem__(key, value)


def set_point(point: str, key: str, value: object) -> Edit:
    return lambda doc: doc["points"][point].__setitem__(key, value)


def drop_point(point: str) -> Edit:
    return lambda doc: doc["points"].pop(point)


MISTAKES: list[tuple[str, Edit, str]] = [
    # (what is wrong, the edit, a fragment the message must contain: the key it names)
    ("unknown top-level key", set_top("recent_auth_seconds", 300), "recent_auth_seconds"),
    ("unknown key in a point", set_point("login", "ttl", 300), "ttl"),
    ("unknown factor", set_point("login", "paths", [["password", "fingerprint"]]), "fingerprint"),
    (
        "unknown access point",
        lambda d: d["points"].__setitem__("withdrawal", {"paths": [["passkey"]]}),
        "withdrawal",
    ),
    ("missing access point", drop_point("payment_confirmation"), "payment_confirmation"),
    ("missing points table", lambda d: d.pop("points"), "points"),
    (
        "a point that is not a table",
        lambda d: d["points"].__setitem__("login", ["passkey"]),
        "login",
    ),
    (
        "weak step_up path: two knowledge factors",
        set_point("step_up", "paths", [["password", "security_question"]]),
        "step_up",
    ),
    (
        "weak step_up path: one possession factor",
        set_point("step_up", "paths", [["passkey"], ["totp"]]),
        "step_up.paths[1]",
    ),
    (
        "single factor allowed on step_up",
        set_point("step_up", "single_factor_allowed", True),
        "step_up",
    ),
    (
        "single factor allowed on recovery",
        set_point("recovery", "single_factor_allowed", True),
        "recovery",
    ),
    (
        "single factor allowed on device_registration",
        set_point("device_registration", "single_factor_allowed", True),
        "device_registration",
    ),
    (
        "one-factor recovery path, even a passkey",
        set_point("recovery", "paths", [["passkey"]]),
        "recovery.paths[0]",
    ),
    (
        "recovery path of one factor once the waivable one is dropped",
        lambda d: d["points"].__setitem__(
            "recovery",
            {
                "paths": [["passkey", "bound_device_approval"]],
                "waived_when_unavailable": ["bound_device_approval"],
            },
        ),
        "recovery.paths[0]",
    ),
    (
        "device_registration strong only with the waivable factor",
        set_point("device_registration", "paths", [["email_otp", "bound_device_approval"]]),
        "device_registration.paths[0]",
    ),
    (
        "single-factor login without single_factor_allowed",
        set_point("login", "paths", [["password"]]),
        "login.paths[0]",
    ),
    (
        "single_factor_allowed not a boolean",
        set_point("login", "single_factor_allowed", "yes"),
        "single_factor_allowed",
    ),
    (
        "a path naming a factor twice",
        set_point("login", "paths", [["password", "password", "totp"]]),
        "twice",
    ),
    ("an empty path", set_point("login", "paths", [[]]), "login.paths[0]"),
    ("no paths", set_point("login", "paths", []), "login.paths"),
    ("paths not a list", set_point("login", "paths", "passkey"), "login.paths"),
    (
        "a factor that is not a string",
        set_point("login", "paths", [["password", 7]]),
        "login.paths[0]",
    ),
    (
        "empty waivable list",
        set_point("device_registration", "waived_when_unavailable", []),
        "waived_when_unavailable",
    ),
    ("ttl_s true", set_point("login", "ttl_s", True), "ttl_s"),
    ("ttl_s a string", set_point("login", "ttl_s", "600"), "ttl_s"),
    ("ttl_s a float", set_point("login", "ttl_s", 600.0), "ttl_s"),
    ("ttl_s under a minute", set_point("login", "ttl_s", 59), "ttl_s"),
    ("ttl_s over an hour", set_point("login", "ttl_s", 3601), "ttl_s"),
    ("attempts_max over five (RTS 4(3)(b))", set_point("login", "attempts_max", 6), "attempts_max"),
    ("attempts_max zero", set_point("login", "attempts_max", 0), "attempts_max"),
    (
        "attempts_max true (a bool is an int in Python)",
        set_point("login", "attempts_max", True),
        "attempts_max",
    ),
    ("recent_auth_s true", set_top("recent_auth_s", True), "recent_auth_s"),
    ("recent_auth_s a float", set_top("recent_auth_s", 300.0), "recent_auth_s"),
    ("recent_auth_s under 30", set_top("recent_auth_s", 29), "recent_auth_s"),
    ("code_ttl_s over ten minutes", set_top("code_ttl_s", 601), "code_ttl_s"),
    ("dpop_iat_window_s over five minutes", set_top("dpop_iat_window_s", 301), "dpop_iat_window_s"),
    ("code_sends_max false", set_top("code_sends_max", False), "code_sends_max"),
    (
        "login_attempts_per_ip_max negative",
        set_top("login_attempts_per_ip_max", -1),
        "login_attempts_per_ip_max",
    ),
    ("require_dpop a string", set_top("require_dpop", "true"), "require_dpop"),
    ("require_dpop an integer", set_top("require_dpop", 1), "require_dpop"),
    ("sms_alone_allowed an integer", set_top("sms_alone_allowed", 0), "sms_alone_allowed"),
    ("version missing", lambda d: d.pop("version"), "version"),
    ("version not a string", set_top("version", 2026), "version"),
    ("version empty", set_top("version", ""), "version"),
    ("version too long", set_top("version", "v" * 41), "version"),
    (
        "payment ceiling negative",
        set_top("new_device_payment_max_minor", {"EUR": -1}),
        "new_device_payment_max_minor",
    ),
    (
        "payment ceiling a float",
        set_top("new_device_payment_max_minor", {"EUR": 10.5}),
        "new_device_payment_max_minor",
    ),
    (
        "payment ceiling currency not three letters",
        set_top("new_device_payment_max_minor", {"EURO": 1000}),
        "new_device_payment_max_minor",
    ),
    (
        "payment ceilings not a table",
        set_top("new_device_payment_max_minor", [1000]),
        "new_device_payment_max_minor",
    ),
]


@pytest.mark.parametrize(("edit", "names"), [m[1:] for m in MISTAKES], ids=[m[0] for m in MISTAKES])
def test_each_documented_mistake_is_a_configuration_error_naming_the_key(edit, names):
    doc = valid_document()
    edit(doc)
    with pytest.raises(ConfigurationError) as caught:
        parse_policy(doc)
    assert names in str(caught.value)


def test_a_boolean_payment_ceiling_is_a_configuration_error():
    # TOML `EUR = true` is a bool, and bool is an int subclass: it must not pass as 1 minor unit.
    doc = valid_document()
    doc["new_device_payment_max_minor"] = {"EUR": True}
    with pytest.raises(ConfigurationError):
        parse_policy(doc)


def test_single_factor_allowed_lets_a_login_path_have_one_factor():
    doc = valid_document()
    doc["points"]["login"] = {"paths": [["password"]], "single_factor_allowed": True}
    assert parse_policy(doc).point(AccessPoint.LOGIN).paths == ((PASSWORD,),)


def test_parsing_does_not_change_the_document():
    doc = valid_document()
    before = copy.deepcopy(doc)
    parse_policy(doc)
    assert doc == before


# ---- plan_paths --------------------------------------------------------------------------------


def plan(point: AccessPoint, *available: Factor, **top: Any) -> tuple[tuple[Factor, ...], ...]:
    return plan_paths(policy(**top), point, frozenset(available))


def test_paths_needing_a_factor_the_user_lacks_are_left_out():
    assert plan(AccessPoint.LOGIN, PASSWORD, EMAIL) == ((PASSWORD, EMAIL),)
    assert plan(AccessPoint.LOGIN, PASSWORD, TOTP, EMAIL, PASSKEY) == (
        (PASSKEY,),
        (PASSWORD, TOTP),
        (PASSWORD, EMAIL),
    )


def test_a_user_with_only_a_password_has_no_login_path():
    assert plan(AccessPoint.LOGIN, PASSWORD) == ()


def test_device_registration_waives_the_bound_device_approval_when_the_user_has_no_bound_device():
    assert plan(AccessPoint.DEVICE_REGISTRATION, EMAIL, PASSKEY) == ((EMAIL, PASSKEY),)


def test_device_registration_keeps_the_bound_device_approval_when_the_user_has_a_bound_device():
    assert plan(AccessPoint.DEVICE_REGISTRATION, EMAIL, PASSKEY, APPROVAL) == (
        (EMAIL, PASSKEY, APPROVAL),
    )


def test_device_registration_never_waives_a_factor_the_policy_does_not_call_waivable():
    assert plan(AccessPoint.DEVICE_REGISTRATION, EMAIL, APPROVAL) == ()


def test_the_bound_device_approval_is_not_waived_at_login():
    # Waiving is per point: at login a missing bound device drops the path, never shortens it
    # to the password alone.
    assert plan(AccessPoint.LOGIN, PASSWORD) == ()
    assert plan(AccessPoint.LOGIN, PASSWORD, APPROVAL) == ((PASSWORD, APPROVAL),)


def test_an_sms_only_second_factor_is_refused_to_a_user_with_no_other_second_factor():
    assert plan(AccessPoint.LOGIN, PASSWORD, SMS) == ()


def test_an_sms_second_factor_is_offered_to_a_user_holding_another_second_factor():
    assert plan(AccessPoint.LOGIN, PASSWORD, SMS, TOTP) == ((PASSWORD, TOTP), (PASSWORD, SMS))


def test_an_sms_only_second_factor_is_offered_when_the_policy_allows_sms_alone():
    assert plan(AccessPoint.LOGIN, PASSWORD, SMS, sms_alone_allowed=True) == ((PASSWORD, SMS),)


def test_planned_paths_follow_the_policy_order_and_never_repeat():
    paths = plan(AccessPoint.STEP_UP, PASSKEY, PASSWORD, TOTP, EMAIL)
    assert paths == ((PASSKEY,), (PASSWORD, TOTP), (PASSWORD, EMAIL))
    assert len(set(paths)) == len(paths)


def test_payment_confirmation_offers_the_device_key_with_the_password():
    assert plan(AccessPoint.PAYMENT_CONFIRMATION, F.DEVICE_KEY, PASSWORD) == (
        (F.DEVICE_KEY, PASSWORD),
    )
