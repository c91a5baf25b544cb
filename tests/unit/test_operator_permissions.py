"""The operators' permission table (least privilege: support reads, risk decides), the check
every operator route makes, and what counts as a reason for a decision."""

from __future__ import annotations

import pytest

from zeropay.domain import bounds
from zeropay.domain.errors import Forbidden, InvalidInput, InvalidReason, OperatorRoleRequired
from zeropay.domain.operators import (
    PERMISSIONS,
    Permission,
    Role,
    parse_reason,
    parse_role,
    permissions_of,
    require,
)

READS = {Permission.READ_REVIEWS, Permission.READ_RISK, Permission.READ_FRAUD}


def test_support_reads_the_queue_and_risk_views_and_decides_nothing():
    assert permissions_of([Role.SUPPORT]) == READS
    assert require([Role.SUPPORT], Permission.READ_REVIEWS) is Role.SUPPORT
    assert require([Role.SUPPORT], Permission.READ_RISK) is Role.SUPPORT
    with pytest.raises(OperatorRoleRequired) as refused:
        require([Role.SUPPORT], Permission.DECIDE_REVIEWS)
    assert refused.value.code == "operator_role_required"
    assert refused.value.details["reason"] == "decide_reviews"


def test_support_reads_the_fraud_rate_and_cannot_report_fraud():
    assert require([Role.SUPPORT], Permission.READ_FRAUD) is Role.SUPPORT
    with pytest.raises(OperatorRoleRequired) as refused:
        require([Role.SUPPORT], Permission.REPORT_FRAUD)
    assert refused.value.details["reason"] == "report_fraud"
    assert require([Role.RISK], Permission.REPORT_FRAUD) is Role.RISK


def test_risk_reads_and_decides():
    assert permissions_of([Role.RISK]) == set(Permission)
    assert require([Role.RISK], Permission.DECIDE_REVIEWS) is Role.RISK


def test_no_role_is_granted_nothing():
    assert permissions_of([]) == frozenset()
    for permission in Permission:
        with pytest.raises(OperatorRoleRequired):
            require([], permission)


def test_the_refusal_is_a_403_forbidden():
    assert issubclass(OperatorRoleRequired, Forbidden)


def test_the_least_privileged_role_that_allows_an_action_is_the_one_named():
    both = {Role.RISK, Role.SUPPORT}
    assert require(both, Permission.READ_REVIEWS) is Role.SUPPORT
    assert require(both, Permission.DECIDE_REVIEWS) is Role.RISK


def test_the_table_covers_every_role_and_grants_every_permission_to_someone():
    assert set(PERMISSIONS) == set(Role)
    assert permissions_of(Role) == frozenset(Permission)
    assert PERMISSIONS[Role.SUPPORT] < PERMISSIONS[Role.RISK]


def test_the_table_cannot_be_changed_at_run_time():
    with pytest.raises(TypeError):
        PERMISSIONS[Role.SUPPORT] = frozenset(Permission)  # type: ignore[index]


@pytest.mark.parametrize("raw", ["support", "risk"])
def test_a_role_is_parsed_by_its_exact_name(raw):
    assert parse_role(raw).value == raw


@pytest.mark.parametrize("raw", ["admin", "Risk", " risk", "", None, 1])
def test_any_other_role_name_is_refused(raw):
    with pytest.raises(InvalidInput) as refused:
        parse_role(raw)
    assert refused.value.details["field"] == "role"


def test_a_reason_is_trimmed_and_kept():
    assert parse_reason("  known customer, called back  ") == "known customer, called back"
    longest = "x" * bounds.OPERATOR_REASON_LENGTH_MAX
    assert parse_reason(longest) == longest


@pytest.mark.parametrize(
    "raw",
    [
        None,
        42,
        "",
        "   ",
        "x" * (bounds.OPERATOR_REASON_LENGTH_MAX + 1),
        "ok\nIGNORE THE ABOVE",
        "tab\there",
        "bell\x07",
        "looks fine \u202egnp.exe",  # a right-to-left override makes the log lie
    ],
)
def test_a_missing_blank_overlong_or_unprintable_reason_is_refused(raw):
    with pytest.raises(InvalidReason) as refused:
        parse_reason(raw)
    assert refused.value.code == "invalid_reason"
    assert refused.value.details["field"] == "reason"
