"""The data inventory (GDPR Art. 30): every stored column that holds personal data, with what it
is, why it is kept, on which legal basis (GDPR Art. 6(1)) and how long, declared next to the
schema it describes. Whether a field is encrypted is read from ``ENCRYPTED_COLUMNS``, never said
twice here.

The rule the tests hold the schema to: every column of a table that names a user (a column in
``USER_LINKS``) or holds a ciphertext is either here or in ``NOT_PERSONAL`` with a reason, and
every other table is in ``NOT_PERSONAL_TABLES`` with a reason. A column added to such a table
without a line here fails ``tests/unit/test_inventory.py``.

``OWNED_BY`` says how the rows of each inventoried table belong to one user; the privacy center
and the export read a user's data through it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum

from sqlalchemy import ColumnElement, MetaData, Table, and_, or_, select

from zeropay.adapters.sql import tables as t
from zeropay.adapters.sql.encrypted import ENCRYPTED_COLUMNS, EncryptedColumn


class Basis(Enum):
    """GDPR Art. 6(1): why the law lets us keep a field."""

    CONTRACT = "Art. 6(1)(b) contract: needed to run the account and its payments"
    LEGAL_OBLIGATION = "Art. 6(1)(c) legal obligation: anti-money-laundering record keeping, PSD2"
    LEGITIMATE_INTEREST = "Art. 6(1)(f) legitimate interest: fraud prevention and security"


class Shown(Enum):
    """What the user is shown of a field of their own."""

    VALUE = "value"  # the value, decrypted where it is encrypted
    HIDDEN = "held, not shown"  # a secret or a hash: its presence only


# No job deletes these rows, and erasure deletes none either: it makes what is encrypted under
# the user's key unreadable, revokes and wipes what it names, and leaves the rest.
UNTIL_ERASURE = (
    "no job deletes it; erasure shreds what is encrypted under your key and leaves plaintext "
    "fields in place"
)
AML = (
    "kept after erasure, pseudonymous (it names only the account id): anti-money-laundering law "
    "asks for at least 5 years after the relationship ends; no job deletes it"
)


@dataclass(frozen=True)
class Personal:
    table: Table
    column: str
    name: str  # short, for the user
    purpose: str
    basis: Basis
    retention: str  # in words
    setting: str | None = None  # the setting or bound that enforces the retention, where one does
    shown: Shown = Shown.VALUE

    @property
    def where(self) -> str:
        return f"{self.table.name}.{self.column}"

    @property
    def encrypted(self) -> bool:
        return (self.table.name, self.column) in _ENCRYPTED


_ENCRYPTED = frozenset((e.table.name, e.column) for e in ENCRYPTED_COLUMNS)


def _group(
    table: Table,
    basis: Basis,
    purpose: str,
    retention: str,
    names: dict[str, str],
    *,
    setting: str | None = None,
    secret: tuple[str, ...] = (),
) -> tuple[Personal, ...]:
    return tuple(
        Personal(
            table,
            column,
            name,
            purpose,
            basis,
            retention,
            setting,
            Shown.HIDDEN if column in secret else Shown.VALUE,
        )
        for column, name in names.items()
    )


_C, _L, _F = Basis.CONTRACT, Basis.LEGAL_OBLIGATION, Basis.LEGITIMATE_INTEREST

INVENTORY: tuple[Personal, ...] = (
    *_group(
        t.users,
        _C,
        "your account and how we reach you",
        UNTIL_ERASURE + "; the address is then kept sealed under a separate key for the AML period",
        {
            "id": "account id",
            "email_ciphertext": "email address",
            "email_index": "email lookup index",
            "password_hash": "password (hashed)",
            "status": "account status",
            "created_at": "signed up at",
            "email_verified_at": "email confirmed at",
            "password_changed_at": "password changed at",
        },
        setting="ZEROPAY_AML_RETENTION_DAYS",
        secret=("email_index", "password_hash"),
    ),
    *_group(
        t.aml_retention,
        _L,
        "identity kept for anti-money-laundering law after erasure",
        "until retained_until, when the end_retention job destroys its key",
        {
            "user_id": "account id",
            "email_ciphertext": "retained email address",
            "erased_at": "erased at",
            "retained_until": "kept until",
        },
        setting="ZEROPAY_AML_RETENTION_DAYS",
        secret=("email_ciphertext",),
    ),
    *_group(
        t.sessions,
        _C,
        "keeping you signed in and letting you end sessions",
        UNTIL_ERASURE + "; a session works until expires_at or its idle timeout",
        {
            "id": "session id",
            "token_hash": "session token (hashed)",
            "user_id": "account id",
            "created_at": "started at",
            "last_seen_at": "last used at",
            "expires_at": "expires at",
            "idle_timeout_s": "idle timeout",
            "methods": "how you signed in",
            "revoked_at": "ended at",
            "user_agent": "browser or app (user agent)",
            "jkt": "device key thumbprint",
            "device_id": "device",
        },
        setting="ZEROPAY_SESSION_IDLE_S",
        secret=("token_hash",),
    ),
    *_group(
        t.notifications,
        _C,
        "security and payment notices to you",
        UNTIL_ERASURE,
        {
            "id": "notice id",
            "user_id": "account id",
            "kind": "kind",
            "body": "text",
            "created_at": "sent at",
            "read_at": "read at",
        },
    ),
    *_group(
        t.outbound_email,
        _C,
        "emails to you (codes, alerts)",
        UNTIL_ERASURE,
        {
            "id": "message id",
            "user_id": "account id",
            "subject": "subject",
            "body_ciphertext": "message text (may carry a one-time code)",
            "created_at": "queued at",
            "next_attempt_at": "next attempt at",
            "attempts": "attempts",
            "sent_at": "sent at",
            "last_error": "delivery error",
        },
        secret=("body_ciphertext",),
    ),
    *_group(
        t.devices,
        _C,
        "your bound devices, the possession factor",
        UNTIL_ERASURE + "; erasure unbinds them",
        {
            "id": "device id",
            "user_id": "account id",
            "name": "device name",
            "platform": "platform",
            "jkt": "device key thumbprint",
            "public_jwk": "device public key",
            "status": "status",
            "created_at": "bound at",
            "last_seen_at": "last seen at",
            "reduced_until": "reduced limits until",
            "removed_at": "removed at",
            "device_class": "device class (what it keeps its keys in)",
        },
    ),
    *_group(
        t.authenticators,
        _C,
        "your sign-in factors (strong customer authentication)",
        UNTIL_ERASURE + "; erasure revokes them",
        {
            "id": "factor id",
            "user_id": "account id",
            "kind": "kind",
            "label": "label",
            "status": "status",
            "secret_ciphertext": "TOTP/OCRA seed, phone number or device PIN (hashed)",
            "credential_id": "passkey credential id",
            "public_key": "passkey public key",
            "sign_count": "signature counter",
            "clone_signals": "clone signals",
            "last_step": "last TOTP step",
            "ocra_suite": "OCRA suite",
            "device_id": "device",
            "pending_secret": "pending challenge",
            "pending_expires_at": "pending until",
            "created_at": "added at",
            "last_used_at": "last used at",
            "removed_at": "removed at",
        },
        secret=("secret_ciphertext", "pending_secret"),
    ),
    *_group(
        t.factor_states,
        _F,
        "locking a factor after failures (PSD2 RTS Art. 4(3)(b))",
        UNTIL_ERASURE,
        {
            "user_id": "account id",
            "factor": "factor",
            "failures": "failures",
            "locks": "locks",
            "locked_until": "locked until",
            "locked_permanently": "locked permanently",
            "updated_at": "updated at",
        },
    ),
    *_group(
        t.recovery_codes,
        _C,
        "recovering your account",
        UNTIL_ERASURE,
        {
            "user_id": "account id",
            "code_hash": "recovery code (keyed hash)",
            "created_at": "made at",
            "used_at": "used at",
        },
        secret=("code_hash",),
    ),
    *_group(
        t.security_answers,
        _C,
        "recovering your account",
        UNTIL_ERASURE,
        {
            "user_id": "account id",
            "slot": "slot",
            "question_ciphertext": "question you chose",
            "answer_hash": "answer (hashed)",
            "created_at": "set at",
        },
        secret=("answer_hash",),
    ),
    *_group(
        t.auth_flows,
        _C,
        "sign-in, step-up and confirmation in progress",
        "a day past the flow's expiry (the purge_replay_records job)",
        {
            "id": "flow id",
            "point": "access point",
            "user_id": "account id",
            "state": "state",
            "paths": "factors asked",
            "done": "factors done",
            "attempts_left": "attempts left",
            "issued_at": "started at",
            "expires_at": "expires at",
            "binding": "what it confirms",
            "challenge": "challenge",
            "code_hash": "code (keyed hash)",
            "code_factor": "code channel",
            "code_expires_at": "code expires at",
            "code_sends": "codes sent",
            "approval_code": "approval number",
            "approved_by": "approving device",
            "approval_state": "approval state",
            "updated_at": "updated at",
            "busy_until": "busy until",
        },
        secret=("challenge", "code_hash", "approval_code"),
    ),
    *_group(
        t.operator_roles,
        _C,
        "operator access (least privilege)",
        "until revoked; erasure revokes it",
        {
            "user_id": "account id",
            "role": "role",
            "granted_at": "granted at",
            "granted_by": "granted by",
        },
    ),
    *_group(
        t.risk_records,
        _F,
        "fraud prevention: your usual devices, places and amounts (IP addresses and device data)",
        "your own baseline until erasure; device and IP records until idle for the rules' "
        "longest window (purge_risk_records job)",
        {
            "kind": "kind",
            "subject": "account, device or IP address",
            "body": "what the risk engine remembers",
            "updated_at": "updated at",
        },
        setting="risk.toml windows",
    ),
    *_group(
        t.risk_assessments,
        _F,
        "fraud prevention: each risk decision and its reasons",
        UNTIL_ERASURE + " (it names only the account id)",
        {
            "id": "decision id",
            "user_subject": "account id",
            "event_type": "event",
            "ref": "flow or payment",
            "action": "action",
            "score": "score",
            "reasons": "reasons",
            "factors": "factors asked",
            "config_version": "rules version",
            "event": "the event as scored (IP, device, amount)",
            "state": "state",
            "created_at": "at",
            "settled_at": "settled at",
        },
    ),
    *_group(
        t.consents,
        _C,
        "your choices of which signals the risk engine may use about you, so we honour them",
        "the latest choice per group, kept while the account is; each change is also in the "
        "audit log; erasure deletes these rows",
        {
            "user_id": "account id",
            "signal_group": "signal group (location, behaviour)",
            "given": "allowed",
            "changed_at": "changed at",
        },
    ),
    *_group(
        t.ledger_accounts,
        _L,
        "your wallet balance (pseudonymous: names only the account id)",
        AML,
        {
            "id": "wallet account id",
            "kind": "kind",
            "owner_id": "account id",
            "currency": "currency",
            "debits_posted": "debits",
            "credits_posted": "credits",
            "debits_pending": "pending debits",
            "credits_pending": "pending credits",
            "created_at": "opened at",
        },
    ),
    *_group(
        t.ledger_transfers,
        _L,
        "your wallet movements (pseudonymous, append-only)",
        AML,
        {
            "seq": "sequence",
            "id": "transfer id",
            "kind": "kind",
            "debit_account_id": "from account",
            "credit_account_id": "to account",
            "currency": "currency",
            "amount_minor": "amount (minor units)",
            "code": "code",
            "pending_id": "hold resolved",
            "expires_at": "hold expires at",
            "reference": "reference",
            "created_at": "at",
        },
    ),
    *_group(
        t.payments,
        _L,
        "payments you made (pseudonymous after erasure)",
        AML,
        {
            "id": "payment id",
            "merchant_id": "merchant",
            "amount_minor": "amount",
            "currency": "currency",
            "description": "description",
            "reference": "reference",
            "capture_method": "capture",
            "status": "status",
            "payer_id": "account id",
            "amount_captured_minor": "captured",
            "amount_refunded_minor": "refunded",
            "spend_period": "spend period",
            "series_ref": "recurring series",
            "hold_seq": "holds placed",
            "created_at": "created at",
            "updated_at": "updated at",
        },
    ),
    *_group(
        t.spend_counters,
        _C,
        "monthly spending limits",
        UNTIL_ERASURE,
        {
            "user_id": "account id",
            "currency": "currency",
            "period": "month",
            "amount_minor": "spent",
        },
    ),
    *_group(
        t.carrier_billing_totals,
        _C,
        "the carrier's monthly cap on your phone bill",
        UNTIL_ERASURE,
        {
            "user_id": "account id",
            "currency": "currency",
            "period": "month",
            "amount_minor": "billed",
        },
    ),
    *_group(
        t.sca_counters,
        _L,
        "payments exempt from SCA since the last one (PSD2 RTS Art. 16)",
        UNTIL_ERASURE,
        {
            "user_id": "account id",
            "exempt_count": "exempt payments",
            "spent": "exempt amounts",
            "last_sca_at": "last SCA at",
            "updated_at": "updated at",
        },
    ),
    *_group(
        t.sca_decisions,
        _L,
        "why each payment needed SCA or was exempt (PSD2)",
        AML,
        {
            "id": "decision id",
            "payment_id": "payment",
            "user_id": "account id",
            "exemption": "exemption",
            "reasons": "reasons",
            "profile": "profile",
            "flow_id": "flow",
            "outcome": "outcome",
            "created_at": "at",
            "updated_at": "updated at",
        },
    ),
    *_group(
        t.trusted_beneficiaries,
        _C,
        "payees you trust (PSD2 RTS Art. 13)",
        "until you remove them or the account is erased",
        {
            "user_id": "account id",
            "merchant_id": "payee",
            "session_id": "added in session",
            "created_at": "added at",
        },
    ),
    *_group(
        t.recurring_series,
        _C,
        "recurring payments (PSD2 RTS Art. 14)",
        UNTIL_ERASURE,
        {
            "merchant_id": "merchant",
            "series_ref": "series",
            "user_id": "account id",
            "amount_minor": "amount",
            "currency": "currency",
            "first_payment_id": "first payment",
            "created_at": "started at",
        },
    ),
    *_group(
        t.instruments,
        _C,
        "your cards and phone numbers for payments",
        "until you remove them or the account is erased (number wiped, row kept for charges)",
        {
            "id": "instrument id",
            "user_id": "account id",
            "kind": "kind",
            "token_hash": "token (hashed)",
            "number_index": "number lookup index",
            "number_ciphertext": "card or phone number",
            "display_ciphertext": "shown as",
            "brand": "brand",
            "exp_month": "expiry month",
            "exp_year": "expiry year",
            "status": "status",
            "created_at": "added at",
            "removed_at": "removed at",
        },
        secret=("token_hash", "number_index", "number_ciphertext"),
    ),
    *_group(
        t.instrument_device_keys,
        _C,
        "paying with an instrument from a bound device",
        "until the instrument or device is removed or the account is erased",
        {
            "id": "key id",
            "instrument_id": "instrument",
            "device_id": "device",
            "user_id": "account id",
            "key_ciphertext": "cryptogram key",
            "last_counter": "last counter",
            "failures": "failures",
            "locks": "locks",
            "locked_until": "locked until",
            "locked_permanently": "locked permanently",
            "status": "status",
            "created_at": "made at",
            "last_used_at": "last used at",
            "removed_at": "removed at",
        },
        secret=("key_ciphertext",),
    ),
    *_group(
        t.idempotency_keys,
        _C,
        "answering a retried request once",
        "until expires_at (purge_idempotency_keys job)",
        {
            "scope": "scope (your account)",
            "key": "request key",
            "fingerprint": "request fingerprint",
            "status": "status",
            "response_status": "response status",
            "response_body": "response",
            "locked_until": "locked until",
            "created_at": "at",
            "expires_at": "expires at",
        },
        setting="Durations.idempotency_keep_s",
        secret=("fingerprint",),
    ),
    *_group(
        t.audit_log,
        _F,
        "the security audit trail (append-only, hash-chained)",
        "kept: the chain covers every entry; entries you acted in are sealed under your "
        "key, which erasure destroys",
        {
            "seq": "sequence",
            "at": "at",
            "event": "event",
            "actor": "who acted",
            "subject": "about whom",
            "data": "details",
            "hash": "chain hash",
        },
        secret=("hash",),
    ),
    *_group(
        t.onboarding_steps,
        _C,
        "the setup steps you skipped or finished, and the reminders we sent you",
        UNTIL_ERASURE,
        {
            "user_id": "account id",
            "step": "setup step",
            "status": "skipped or done",
            "updated_at": "changed at",
            "skipped_at": "skipped at",
            "completed_at": "done at",
            "reminders_sent": "reminders sent",
        },
    ),
    *_group(
        t.recoveries,
        _F,
        "account recoveries: which factors were used, from which device key, what the risk "
        "check and an operator said, and the cooling-off period that followed",
        UNTIL_ERASURE,
        {
            "id": "recovery id",
            "user_id": "account id",
            "flow_id": "recovery flow id",
            "state": "state",
            "factors": "factors used",
            "jkt": "device key thumbprint",
            "new_device": "from a new device",
            "password_replaced": "password replaced",
            "device_name": "device name",
            "platform": "device platform",
            "device_class": "device class it stated",
            "public_jwk": "device public key",
            "created_at": "started at",
            "passed_at": "factors passed at",
            "expires_at": "to be completed by",
            "risk_reasons": "risk check reasons",
            "device_id": "device it completed on",
            "cooling_until": "cooling off until",
            "decided_by": "operator who decided",
            "decided_at": "decided at",
            "decision_reason": "operator's reason",
            "completed_at": "completed at",
            "reported_at": "reported as not you at",
        },
    ),
)

# Columns that name a customer: a table holding one is about people and is never waved through
# as a whole by NOT_PERSONAL_TABLES.
USER_LINKS = frozenset({"user_id", "payer_id", "owner_id", "user_subject"})

# Columns of inventoried tables that are not personal data, with why (none so far: in a row about
# a person every column says something about them).
NOT_PERSONAL: dict[str, str] = {}

# Tables with no column naming a user, or that hold no personal data although one matches.
NOT_PERSONAL_TABLES: dict[str, str] = {
    "audit_head": "the chain's head: a sequence number and a hash",
    "dpop_proofs": "proof ids and key thumbprints for a few minutes; no account named",
    "fraud_periods": "platform fraud-rate periods",
    "fraud_period_totals": "platform totals per period",
    "fraud_reports": "reports about payments; the payment row is inventoried",
    "jobs": "the job schedule",
    "merchants": "merchants are businesses",
    "api_keys": "merchants' keys",
    "rate_counters": "fixed-window counters keyed by IP or account, gone when the window ends",
    "vault_meta": "the vault's shape",
    "vault_keys": "data keys; a personal key names the user it seals but is no data about them",
    "vault_peers": "server processes",
    "vault_share_drops": "custodians' key shares; submitted_by is a custodian",
    "vault_transfers": "the root key between processes",
    "vault_custodians": "key custodians' credentials (staff, not customers)",
    "webhook_fanout": "the fan-out cursor",
    "webhook_endpoints": "merchants' URLs",
    "webhook_secrets": "merchants' signing secrets",
    "webhook_deliveries": "delivery state of merchant events",
    "webhook_attempts": "delivery attempts",
    "payment_events": "events sent to merchants; name the payment, inventoried in payments",
    "refunds": "refunds of a payment; the payment row is inventoried",
    "instrument_grants": "a merchant's token for an instrument; the instrument is inventoried",
    "charges": "charges of an instrument by a merchant; the instrument is inventoried",
}


def _by_user_id(table: Table) -> Callable[[str], ColumnElement[bool]]:
    return lambda user_id: table.c.user_id == user_id


def _wallet_accounts(user_id: str) -> object:
    a = t.ledger_accounts.c
    return select(a.id).where(a.kind == "wallet", a.owner_id == user_id).scalar_subquery()


def _risk_rows(user_id: str) -> ColumnElement[bool]:
    r, d = t.risk_records.c, t.devices.c
    mine = select(d.jkt).where(d.user_id == user_id).scalar_subquery()
    ids = select(d.id).where(d.user_id == user_id).scalar_subquery()
    return or_(
        and_(r.kind == "user", r.subject == user_id),
        and_(r.kind == "device", or_(r.subject.in_(mine), r.subject.in_(ids))),
    )


def _transfers(user_id: str) -> ColumnElement[bool]:
    x = t.ledger_transfers.c
    return or_(
        x.debit_account_id.in_(_wallet_accounts(user_id)),  # type: ignore[arg-type]
        x.credit_account_id.in_(_wallet_accounts(user_id)),  # type: ignore[arg-type]
    )


# How a table's rows belong to one user.
OWNED_BY: dict[str, Callable[[str], ColumnElement[bool]]] = {
    "users": lambda u: t.users.c.id == u,
    "payments": lambda u: t.payments.c.payer_id == u,
    "ledger_accounts": lambda u: and_(
        t.ledger_accounts.c.owner_id == u, t.ledger_accounts.c.kind == "wallet"
    ),
    "ledger_transfers": _transfers,
    "risk_records": _risk_rows,
    "risk_assessments": lambda u: t.risk_assessments.c.user_subject == u,
    "idempotency_keys": lambda u: t.idempotency_keys.c.scope == u,  # a payer's scope: their id
    "audit_log": lambda u: or_(t.audit_log.c.actor == u, t.audit_log.c.subject == u),
}
OWNED_BY.update(
    {p.table.name: _by_user_id(p.table) for p in INVENTORY if p.table.name not in OWNED_BY}
)


def uncovered(metadata: MetaData) -> list[str]:
    """What the inventory misses in ``metadata``: a column of a table that is not waved through
    (or names a customer, or holds a ciphertext sealed for a person) that is neither inventoried
    nor declared not personal; a table waved through that names a customer; an entry naming a
    column that does not exist."""
    declared = {p.where for p in INVENTORY} | set(NOT_PERSONAL)
    personal_ciphertext = {e.table.name for e in ENCRYPTED_COLUMNS if _sealed_for_a_person(e)}
    out = []
    for table in metadata.sorted_tables:
        names = {c.name for c in table.columns}
        waved = table.name in NOT_PERSONAL_TABLES
        if waved and (names & USER_LINKS or table.name in personal_ciphertext):
            out.append(f"{table.name}: names a person, cannot be declared not personal")
        if waved and not (names & USER_LINKS or table.name in personal_ciphertext):
            continue
        out.extend(
            f"{table.name}.{c}" for c in sorted(names) if f"{table.name}.{c}" not in declared
        )
    columns = {f"{tb.name}.{c.name}" for tb in metadata.sorted_tables for c in tb.columns}
    out.extend(f"{w}: no such column" for w in sorted(declared - columns))
    out.extend(
        f"{n}: no such table" for n in sorted(set(NOT_PERSONAL_TABLES) - set(metadata.tables))
    )
    return out


class _AnyRow:
    def __getattr__(self, name: str) -> object:
        return "usr_inventory" if name != "at" else datetime(2000, 1, 1, tzinfo=UTC)


def _sealed_for_a_person(column: EncryptedColumn) -> bool:
    """Whether an encrypted column is sealed under a person's key (a subject), not a purpose
    key: its subject, rebuilt from a row whose every column reads as a user id, is not None."""
    return column.subject(_AnyRow()) is not None  # type: ignore[arg-type]
