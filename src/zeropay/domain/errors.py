"""The one error tree of ZeroPay.

    Exception
     +-- ZeroPayError
          +-- DomainError                  expected; the caller can act on it (HTTP 4xx)
          |    +-- InvalidInput             malformed or out-of-range input
          |    |    +-- InvalidAmount
          |    |    +-- UnknownCurrency
          |    |    +-- WeakPassword
          |    |    +-- WeakPin              a device PIN too short, not all digits, or guessable
          |    |    +-- InvalidReason        an operator's decision without a usable reason
          |    |    +-- UrlRefused           a webhook URL that could reach inside (SSRF)
          |    |    +-- InvalidOverlap       a secret rotation's overlap out of bounds
          |    |    +-- ShareRefused         a vault share that is malformed, corrupt, foreign or
          |    |                             given twice
          |    |    +-- InstrumentInvalid    a card number, expiry or phone number that cannot be
          |    |                             a payment instrument
          |    |    +-- RecoveryLinkInvalid  a recovery alert's link that is forged, edited,
          |    |                             expired or used
          |    +-- NotFound
          |    +-- Conflict                 the resource is not in a state that allows this
          |    |    +-- CurrencyMismatch
          |    |    +-- InvalidStateTransition
          |    |    +-- EmailTaken
          |    |    +-- IdempotencyKeyReused
          |    |    +-- FlowStepRefused      a step the flow does not expect now (order is enforced)
          |    |    +-- FlowEnded            the flow is complete, failed or expired
          |    |    +-- IdempotencyRequestInFlight
          |    |    +-- TransferIdReused
          |    |    +-- TransactionChanged   the payment's amount, currency or payee is not what
          |    |                             the confirmation was issued for (dynamic linking)
          |    |    +-- FraudReportExists    this payment was already reported as fraud this way
          |    |    +-- InstrumentExists     the payer already holds this number as an instrument
          |    |    +-- GrantExists          the merchant already holds a token for the instrument
          |    |    +-- VaultStateConflict   the vault is not in a state that allows this (already
          |    |                             initialized, not initialized, nothing to unseal)
          |    +-- LimitExceeded
          |    |    +-- PaymentLimitExceeded
          |    |    +-- MonthlyLimitExceeded
          |    |    +-- RefundExceedsPayment
          |    |    +-- TopUpLimitExceeded
          |    |    +-- FraudReportExceedsPayment  a fraud report above what was captured
          |    |    +-- WebhookLimitExceeded too many endpoints, or secrets in one overlap
          |    |    +-- InstrumentLimitExceeded  too many instruments, grants or device keys
          |    +-- InsufficientFunds
          |    +-- FundingDeclined
          |    +-- AuthenticationFailed     never says which element failed (PSD2 RTS 4(3)(a))
          |    +-- FactorLocked
          |    |    +-- CryptogramLocked     a device's cryptogram key, after repeated failures
          |    +-- NotAuthenticated
          |    |    +-- ProofInvalid         a DPoP proof is missing, replayed or does not match
          |    +-- Forbidden
          |    |    +-- RecentAuthRequired   a sensitive action needs a strong login < 5 min old
          |    |    +-- RiskBlocked          the risk engine refused the action
          |    |    +-- ScaUnavailable       SCA is required and the payer holds no way to do it
          |    |    +-- NotAnOperator        an operator route, and the account holds no role
          |    |    +-- PasskeyRequired      an operator session not signed in with a passkey
          |    |    +-- OperatorRoleRequired the operator's roles do not grant the action
          |    |    +-- CryptogramInvalid    a token's use with a replayed or altered cryptogram
          |    |    +-- OnboardingRequired   a payment needs an onboarding step the payer skipped
          |    |    +-- CoolingOff           an action refused to a new device after a recovery
          |    +-- RateLimited
          +-- ConfigurationError           a policy or setting that cannot be used (at start)
          +-- InfrastructureError          adapters only, always ``raise ... from exc`` (HTTP 503)
          |    +-- KeyUnavailable
          |         +-- VaultSealed         the vault holds no root key in this process yet
          |         +-- KeyDestroyed        the data key was crypto-shredded
          |         +-- DetokenizationRefused  an instrument's number asked for outside the
          |                                    funding adapter (a bug: HTTP 500 would hide it)
          +-- InvariantViolation           a bug: a rule the code promised was broken (HTTP 500)

Every error carries a stable ``code`` that clients may branch on; the message is for people.
The table in ``zeropay.api.problems`` maps each class to an HTTP status.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar


class ZeroPayError(Exception):
    code: ClassVar[str] = "error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: Mapping[str, Any] = details


class DomainError(ZeroPayError):
    code = "domain_error"


class InvalidInput(DomainError):
    code = "invalid_input"


class InvalidAmount(InvalidInput):
    code = "invalid_amount"


class UnknownCurrency(InvalidInput):
    code = "unknown_currency"


class WeakPassword(InvalidInput):
    code = "weak_password"


class WeakPin(InvalidInput):
    code = "weak_pin"


class NotFound(DomainError):
    code = "not_found"


class Conflict(DomainError):
    code = "conflict"


class VaultStateConflict(Conflict):
    code = "vault_state"


class CurrencyMismatch(Conflict):
    code = "currency_mismatch"


class InvalidStateTransition(Conflict):
    code = "invalid_state"


class EmailTaken(Conflict):
    code = "email_taken"


class IdempotencyKeyReused(Conflict):
    code = "idempotency_key_reused"


class IdempotencyRequestInFlight(Conflict):
    code = "idempotency_request_in_flight"


class TransferIdReused(Conflict):
    code = "transfer_id_reused"


class LimitExceeded(DomainError):
    code = "limit_exceeded"


class PaymentLimitExceeded(LimitExceeded):
    code = "payment_limit_exceeded"


class MonthlyLimitExceeded(LimitExceeded):
    code = "monthly_limit_exceeded"


class RefundExceedsPayment(LimitExceeded):
    code = "refund_exceeds_payment"


class InsufficientFunds(DomainError):
    code = "insufficient_funds"


class AuthenticationFailed(DomainError):
    code = "authentication_failed"


class FactorLocked(DomainError):
    code = "factor_locked"


class NotAuthenticated(DomainError):
    code = "not_authenticated"


class Forbidden(DomainError):
    code = "forbidden"


class InfrastructureError(ZeroPayError):
    code = "infrastructure_error"


class KeyUnavailable(InfrastructureError):
    code = "key_unavailable"


class VaultSealed(KeyUnavailable):
    """Nothing that needs a secret can run until custodians unseal the vault (HTTP 503)."""

    code = "vault_sealed"


class DetokenizationRefused(KeyUnavailable):
    """Only the funding adapter's revealer opens a payment instrument's number."""

    code = "detokenization_refused"


class KeyDestroyed(KeyUnavailable):
    """The data key was destroyed (crypto-shredding): what it protected is gone for good."""

    code = "key_destroyed"


class InvariantViolation(ZeroPayError):
    code = "invariant_violation"


def invariant(condition: bool, message: str) -> None:
    """State a rule the code promises; unlike ``assert`` it survives ``python -O``."""
    if not condition:
        raise InvariantViolation(message)


class FundingDeclined(DomainError):
    code = "funding_declined"


class TopUpLimitExceeded(LimitExceeded):
    code = "topup_limit_exceeded"


class FlowStepRefused(Conflict):
    code = "flow_step_refused"


class FlowEnded(Conflict):
    code = "flow_ended"


class ProofInvalid(NotAuthenticated):
    code = "proof_invalid"


class RecentAuthRequired(Forbidden):
    code = "recent_auth_required"


class RateLimited(DomainError):
    code = "rate_limited"


class ConfigurationError(ZeroPayError):
    code = "configuration_error"


class RiskBlocked(Forbidden):
    """The risk engine refused the action; ``reasons`` are its stable codes."""

    code = "risk_blocked"


class ScaUnavailable(Forbidden):
    """This payment needs strong customer authentication and the payer holds no factor that
    confirms a payment from this device (a passkey, this device bound, or an OCRA app)."""

    code = "sca_unavailable"


class TransactionChanged(Conflict):
    """A confirmation answered for a transaction other than the payment as it stands (PSD2 RTS
    Art. 5): the flow has ended and the funds were released; confirm the payment afresh."""

    code = "transaction_changed"


class NotAnOperator(Forbidden):
    """Operator routes are for accounts that hold an operator role."""

    code = "not_an_operator"


class PasskeyRequired(Forbidden):
    """Operators sign in with a passkey (phishing-resistant, user verification on the device)."""

    code = "passkey_required"


class OperatorRoleRequired(Forbidden):
    """The operator's roles do not grant this action (support reads; risk decides)."""

    code = "operator_role_required"


class InvalidReason(InvalidInput):
    """An operator's decision needs a reason: 1 to 500 printable characters."""

    code = "invalid_reason"


class UrlRefused(InvalidInput):
    """A webhook URL that is malformed or could reach inside the platform (SSRF); ``reason``
    says which rule refused it (``domain.webhooks``)."""

    code = "webhook_url_refused"


class ShareRefused(InvalidInput):
    code = "share_refused"


class InvalidOverlap(InvalidInput):
    """How long the old webhook secret keeps signing after a rotation: whole seconds in bounds."""

    code = "invalid_overlap"


class WebhookLimitExceeded(LimitExceeded):
    """Too many active webhook endpoints for one merchant, or too many secrets in one overlap."""

    code = "webhook_limit_exceeded"


class FraudReportExists(Conflict):
    """A payment is reported as fraud once per kind (a refund flagged fraudulent, a chargeback):
    the platform's fraud rate counts each report once."""

    code = "fraud_report_exists"


class FraudReportExceedsPayment(LimitExceeded):
    """A fraud report is at most what the payment captured (``limit_minor``)."""

    code = "fraud_report_exceeds_payment"


class InstrumentInvalid(InvalidInput):
    """A payment instrument that cannot be added: ``field`` and ``reason`` say what is wrong,
    and the message never repeats the number."""

    code = "instrument_invalid"


class InstrumentExists(Conflict):
    """The payer already holds this card or phone number (found by its blind index)."""

    code = "instrument_exists"


class GrantExists(Conflict):
    """The merchant already holds a token for this instrument: revoke it to issue another."""

    code = "grant_exists"


class InstrumentLimitExceeded(LimitExceeded):
    """Too many instruments for one payer, merchants for one instrument, or device keys."""

    code = "instrument_limit_exceeded"


class CryptogramInvalid(Forbidden):
    """A token used with a cryptogram that is not the one for this use (replayed, or made for
    another amount, currency, merchant, token or counter). One answer for every cause."""

    code = "cryptogram_invalid"


class CryptogramLocked(FactorLocked):
    """The device key that made this cryptogram is locked after repeated failures; the payer
    provisions a new one from the device (after a strong sign-in)."""

    code = "cryptogram_locked"


class OnboardingRequired(Forbidden):
    """Policy requires an onboarding step before this payment (``domain.onboarding``): above the
    low-value ceiling, or any payment once the account is old enough. ``step`` names it."""

    code = "onboarding_required"


class RecoveryLinkInvalid(InvalidInput):
    """A one-click link from a recovery alert that the server did not sign for that account, or
    that was edited; an expired or used one is ``expired`` or ``used`` in ``reason``."""

    code = "recovery_link_invalid"


class CoolingOff(Forbidden):
    """The account was recovered recently: a session on the device it was recovered on, or on
    no device bound before the recovery, cannot do ``action`` until ``until``
    (``domain.recovery``)."""

    code = "cooling_off"
