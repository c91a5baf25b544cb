"""Older phones: README.md's fallback table is the shipped policy's, row by row, and the policy
engine enforces each row; the policy checks on device classes; the device PIN rules.

The table is read out of README.md with a parser of its own (not the renderer), so a row edited
by hand, a row missing or a policy change without its docs all fail here.
"""

from __future__ import annotations

import copy
import re
import tomllib
from itertools import product
from pathlib import Path
from typing import Any

import pytest

import zeropay
from zeropay.cli import fallback_table
from zeropay.domain.device_classes import STRONGEST_FIRST, DeviceClass, registered_as
from zeropay.domain.errors import ConfigurationError, WeakPin
from zeropay.domain.factors import RESTRICTED, Factor, is_strong
from zeropay.domain.pins import check_new_pin
from zeropay.domain.policy import ALWAYS_STRONG, AccessPoint, parse_policy, plan_paths

README = Path(__file__).parents[2] / "README.md"
START = "<!-- fallback-table:start"
END = "<!-- fallback-table:end -->"
ROW = re.compile(r"^\| (\w+) \| (\w+) \| (.+) \|$")


def shipped_document() -> dict[str, Any]:
    with (Path(zeropay.__file__).parent / "policies" / "default.toml").open("rb") as f:
        return tomllib.load(f)


Row = tuple[AccessPoint, DeviceClass, tuple[tuple[Factor, ...], ...], frozenset[Factor]]


def _block() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(START)
    body = text[text.index("\n", start) + 1 : text.index(END)]
    return body


def _readme_rows() -> list[Row]:
    """(point, class, paths, factors shown as waivable) for every row of README's table."""
    rows: list[Row] = []
    for line in _block().splitlines()[2:]:
        found = ROW.match(line)
        assert found, f"not a row of the fallback table: {line!r}"
        point, device_class, cell = found.groups()
        paths: list[tuple[Factor, ...]] = []
        waived: set[Factor] = set()
        for shown in [] if cell == "none" else cell.split("<br>"):
            factors = []
            for name in shown.strip("`").split(" + "):
                if name.startswith("("):
                    waived.add(Factor(name.strip("()")))
                factors.append(Factor(name.strip("()")))
            paths.append(tuple(factors))
        rows.append(
            (AccessPoint(point), DeviceClass(device_class), tuple(paths), frozenset(waived))
        )
    return rows


ROWS = _readme_rows()
SHIPPED = parse_policy(shipped_document())
EVERYTHING = frozenset(Factor)


def test_the_readme_table_is_what_zeropay_policy_table_prints_for_the_shipped_policy():
    assert _block() == fallback_table(SHIPPED)


def test_the_readme_table_has_one_row_for_every_access_point_and_device_class():
    assert [(p, c) for p, c, _, _ in ROWS] == list(product(AccessPoint, STRONGEST_FIRST))


@pytest.mark.parametrize(("point", "device_class", "paths", "waived"), ROWS)
def test_each_row_is_what_the_policy_engine_offers_that_class(point, device_class, paths, waived):
    # A user who holds every factor is offered exactly the row's combinations...
    assert plan_paths(SHIPPED, point, EVERYTHING, device_class) == paths
    # ...and every other path of the point is refused to the class.
    for other in SHIPPED.point(point).paths:
        if other not in paths:
            assert other not in plan_paths(SHIPPED, point, EVERYTHING, device_class)
    # A factor in parentheses is dropped when the user has none to present.
    assert waived == SHIPPED.point(point).waived_when_unavailable & {f for p in paths for f in p}
    if waived:
        lacking = plan_paths(SHIPPED, point, EVERYTHING - waived, device_class)
        assert lacking == tuple(tuple(f for f in p if f not in waived) for p in paths)


@pytest.mark.parametrize(("point", "device_class", "paths", "waived"), ROWS)
def test_no_row_is_weaker_than_its_point_allows(point, device_class, paths, waived):
    for path in paths:
        minimal = [f for f in path if f not in waived]
        if point in ALWAYS_STRONG:
            assert is_strong(minimal), (point, device_class, path)
        if point is AccessPoint.RECOVERY:
            assert len(minimal) >= 2, (device_class, path)  # never a single factor
    # SMS is never the only second factor a class is given (sms_alone_allowed is false).
    sms_only = [p for p in paths if Factor.SMS_OTP in p]
    if sms_only:
        assert any(set(p) - RESTRICTED - {Factor.EMAIL_OTP, Factor.PASSWORD} for p in paths)


@pytest.mark.parametrize(("point", "device_class", "paths", "waived"), ROWS)
def test_no_class_without_a_platform_authenticator_is_offered_a_passkey(
    point, device_class, paths, waived
):
    if device_class is not DeviceClass.PLATFORM:
        assert all(Factor.PASSKEY not in p for p in paths)


def test_a_weaker_class_never_gets_a_path_a_stronger_one_lacks():
    for point in AccessPoint:
        if point in (AccessPoint.DEVICE_REGISTRATION, AccessPoint.SIGNUP):
            continue
        offered = [set(plan_paths(SHIPPED, point, EVERYTHING, c)) for c in STRONGEST_FIRST]
        assert offered[2] <= offered[1] <= offered[0], point


def test_a_device_nobody_has_bound_is_offered_the_policy_s_paths():
    for point in AccessPoint:
        assert plan_paths(SHIPPED, point, EVERYTHING) == SHIPPED.point(point).paths


# ---- what `zeropay policy check` refuses about classes -------------------------------------------


def _with(point: str, classes: dict[str, Any], **top: Any) -> dict[str, Any]:
    doc = copy.deepcopy(shipped_document())
    doc["points"][point]["classes"] = classes
    doc.update(top)
    return doc


@pytest.mark.parametrize(
    ("point", "classes", "top", "says"),
    [
        ("login", {"ancient": [["password", "totp"]]}, {}, "unknown device class"),
        ("login", {"software": [["password", "ocra"]]}, {}, "is not one of points.login.paths"),
        ("login", {"software": "all"}, {}, "must be a list of paths"),
        ("login", {"key_store": [["passkey"]]}, {}, "cannot present"),
        (
            "payment_confirmation",
            {"key_store": [["password", "ocra"]], "software": [["device_key", "pin"]]},
            {},
            "a weaker device class never gets more",
        ),
        (
            "login",
            {"key_store": [["password", "sms_otp"]], "software": [["password", "sms_otp"]]},
            {},
            "only SMS as its second factor",
        ),
        ("login", {}, {"pin_digits_min": 5}, "pin_digits_min must be an integer from 6"),
    ],
)
def test_a_policy_that_widens_a_class_or_leaves_it_sms_alone_is_refused(point, classes, top, says):
    with pytest.raises(ConfigurationError, match=says):
        parse_policy(_with(point, classes, **top))


@pytest.mark.parametrize(
    "path",
    [
        ["email_otp", "password", "bound_device_approval"],
        ["email_otp", "passkey", "pin"],
    ],
)
def test_a_registration_path_makes_a_passkey_or_sets_a_pin_and_not_both(path):
    doc = copy.deepcopy(shipped_document())
    doc["points"]["device_registration"]["paths"].append(path)
    with pytest.raises(ConfigurationError, match="exactly one of passkey, pin"):
        parse_policy(doc)


def test_sms_alone_for_a_class_is_a_choice_the_policy_can_make():
    doc = _with(
        "login",
        {"key_store": [["password", "sms_otp"]], "software": [["password", "sms_otp"]]},
        sms_alone_allowed=True,
    )
    parsed = parse_policy(doc)
    assert parsed.point(AccessPoint.LOGIN).paths_for(DeviceClass.SOFTWARE) == (
        (Factor.PASSWORD, Factor.SMS_OTP),
    )


def test_a_device_with_a_passkey_is_platform_and_a_claim_only_narrows():
    assert registered_as(DeviceClass.PLATFORM, made_passkey=True) is DeviceClass.PLATFORM
    assert registered_as(DeviceClass.PLATFORM, made_passkey=False) is DeviceClass.KEY_STORE
    assert registered_as(DeviceClass.SOFTWARE, made_passkey=False) is DeviceClass.SOFTWARE


# ---- device PINs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pin", "reason"),
    [
        (40718293, "not_digits"),
        ("4071 8293", "not_digits"),
        ("４０７１８２９３", "not_digits"),  # full-width digits are not ASCII digits
        ("4071829", "too_short"),
        ("4" * 8 + "07182930417", "too_long"),
        ("00000000", "guessable"),
        ("12121212", "guessable"),
        ("123123123", "guessable"),
        ("12345678", "guessable"),
        ("98765432", "guessable"),
        ("89012345", "guessable"),  # a run that wraps round
        ("11223344", "guessable"),
    ],
)
def test_a_pin_that_is_not_digits_too_short_too_long_or_guessable_is_refused(pin, reason):
    with pytest.raises(WeakPin) as refused:
        check_new_pin(pin, digits_min=8)
    assert refused.value.details["reason"] == reason


def test_a_policy_may_lower_the_pin_length_to_six_digits_and_no_lower():
    assert check_new_pin("407182", digits_min=6) == "407182"
    with pytest.raises(WeakPin):
        check_new_pin("407182", digits_min=8)
    assert SHIPPED.pin_digits_min == 8  # NIST 800-63B §5.1.1.1 for a secret the payer chooses
