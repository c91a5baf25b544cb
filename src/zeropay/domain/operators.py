"""Operators: accounts with a role, and what each role may do (least privilege).

    support   reads the review queue, a user's risk view and the platform's fraud rate
    risk      the same, decides payments held for review (approve or decline) and reports
              payments as fraud (chargebacks, PSD2 RTS Art. 18-20)

One table below grants permissions to roles; every operator route names the permission it needs
and ``require`` checks it against the roles the operator holds now. A permission no role in the
table grants is granted to no one.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from zeropay.domain import bounds
from zeropay.domain.errors import InvalidInput, InvalidReason, OperatorRoleRequired, invariant


class Role(StrEnum):
    SUPPORT = "support"
    RISK = "risk"


class Permission(StrEnum):
    READ_REVIEWS = "read_reviews"  # the queue of payments held for review, and one of them
    READ_RISK = "read_risk"  # a user's device trust scores and recent risk decisions
    DECIDE_REVIEWS = "decide_reviews"  # approve (the money moves) or decline (it is released)
    READ_FRAUD = "read_fraud"  # the platform's fraud rate, its quarters and where TRA is on
    REPORT_FRAUD = "report_fraud"  # report a payment as fraud: it counts in the fraud rate


# The one table of who may do what. Roles are listed from the least privileged up, so the role
# ``require`` names for an action is the least one that allows it.
PERMISSIONS: Mapping[Role, frozenset[Permission]] = MappingProxyType(
    {
        Role.SUPPORT: frozenset(
            {Permission.READ_REVIEWS, Permission.READ_RISK, Permission.READ_FRAUD}
        ),
        Role.RISK: frozenset(
            {
                Permission.READ_REVIEWS,
                Permission.READ_RISK,
                Permission.DECIDE_REVIEWS,
                Permission.READ_FRAUD,
                Permission.REPORT_FRAUD,
            }
        ),
    }
)


@dataclass(frozen=True, slots=True)
class Operator:
    """Who is acting: the user, the roles they held when the request began, the session."""

    user_id: str
    roles: frozenset[Role]
    session_id: str


def permissions_of(roles: Iterable[Role]) -> frozenset[Permission]:
    granted: set[Permission] = set()
    for role in roles:
        granted |= PERMISSIONS[role]
    return frozenset(granted)


invariant(set(PERMISSIONS) == set(Role), "every role has a row in the permission table")
invariant(permissions_of(Role) == frozenset(Permission), "every permission is granted by a role")
invariant(PERMISSIONS[Role.SUPPORT] < PERMISSIONS[Role.RISK], "support reads; only risk decides")


def require(roles: Iterable[Role], permission: Permission) -> Role:
    """The least privileged of ``roles`` that grants ``permission``; ``OperatorRoleRequired``
    when none does."""
    held = frozenset(roles)
    for role in Role:  # declared from the least privileged up
        if role in held and permission in PERMISSIONS[role]:
            return role
    raise OperatorRoleRequired(
        "your operator role does not allow this",
        reason=permission.value,
    )


def parse_role(raw: object) -> Role:
    if isinstance(raw, str):
        for role in Role:
            if raw == role.value:
                return role
    names = ", ".join(r.value for r in Role)
    raise InvalidInput(f"a role is one of: {names}", field="role")


def parse_reason(raw: object) -> str:
    """Why an operator decided: 1 to ``OPERATOR_REASON_LENGTH_MAX`` printable characters once
    trimmed. It is kept in the audit log, where a control or direction-override character could
    make a later reader see something other than what was written."""
    if not isinstance(raw, str):
        raise InvalidReason("a reason is required", field="reason")
    reason = unicodedata.normalize("NFC", raw).strip()
    if not reason:
        raise InvalidReason("a reason is required", field="reason")
    if len(reason) > bounds.OPERATOR_REASON_LENGTH_MAX:
        raise InvalidReason(
            f"a reason has at most {bounds.OPERATOR_REASON_LENGTH_MAX} characters", field="reason"
        )
    if not reason.isprintable():
        raise InvalidReason("a reason holds only printable characters", field="reason")
    return reason
