"""The schema, in SQLAlchemy Core. Alembic migrations create it; this module describes it.

Rules that the Python code enforces are checked again here, so that a bug or a hand-written
statement cannot break them either: positive amounts, wallets that never go negative, transfers
whose currency is the currency of both accounts (composite foreign keys), a hold resolved once
(unique ``pending_id``), refunds never above what was captured. Ledger transfers and audit entries
are append-only: triggers refuse UPDATE and DELETE (see the first migration).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from zeropay.domain import bounds

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = bounds.ID_LENGTH_MAX  # our ids: a short type prefix and 26 Crockford base32 characters
TS = DateTime(timezone=True)

users = Table(
    "users",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("email_index", LargeBinary(32), nullable=False, unique=True),
    Column("email_ciphertext", LargeBinary, nullable=False),
    Column("password_hash", String(255), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", TS, nullable=False),
    # Set once the user proved the address (sign-up flow); until then it is no factor.
    Column("email_verified_at", TS),
    Column("password_changed_at", TS),
    CheckConstraint("status IN ('active', 'frozen', 'erased')", name="status"),
)

factor_states = Table(
    "factor_states",
    metadata,
    Column("user_id", String(ID), ForeignKey("users.id"), primary_key=True),
    Column("factor", String(32), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("locks", Integer, nullable=False),
    Column("locked_until", TS),
    Column("locked_permanently", Integer, nullable=False),
    Column("updated_at", TS, nullable=False),
    CheckConstraint("failures >= 0 AND locks >= 0", name="counts"),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("token_hash", LargeBinary(32), nullable=False, unique=True),
    Column("user_id", String(ID), ForeignKey("users.id"), nullable=False, index=True),
    Column("created_at", TS, nullable=False),
    Column("last_seen_at", TS, nullable=False),
    Column("expires_at", TS, nullable=False),
    Column("idle_timeout_s", Integer, nullable=False),
    Column("methods", Text, nullable=False),  # JSON: [{"factor": ..., "at": ...}]
    Column("revoked_at", TS),
    Column("user_agent", String(bounds.USER_AGENT_LENGTH_MAX)),
    Column("jkt", String(bounds.JKT_LENGTH)),  # RFC 7638 thumbprint the requests must prove
    Column("device_id", String(ID)),
)

notifications = Table(
    "notifications",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("user_id", String(ID), ForeignKey("users.id"), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("read_at", TS),
    Index("ix_notifications_user_created", "user_id", "created_at"),
)

merchants = Table(
    "merchants",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("name", String(bounds.MERCHANT_NAME_LENGTH_MAX), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("mcc", String(4)),  # ISO 18245 merchant category code: the risk engine reads it
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("merchant_id", String(ID), ForeignKey("merchants.id"), nullable=False, index=True),
    Column("secret_hash", LargeBinary(32), nullable=False),
    Column("scopes", String(256), nullable=False),
    Column("label", String(bounds.API_KEY_LABEL_LENGTH_MAX), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("revoked_at", TS),
)

ledger_accounts = Table(
    "ledger_accounts",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("owner_id", String(ID), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("debits_posted", BigInteger, nullable=False),
    Column("credits_posted", BigInteger, nullable=False),
    Column("debits_pending", BigInteger, nullable=False),
    Column("credits_pending", BigInteger, nullable=False),
    Column("created_at", TS, nullable=False),
    UniqueConstraint("kind", "owner_id", "currency", name="uq_ledger_accounts_owner"),
    UniqueConstraint("id", "currency", name="uq_ledger_accounts_id_currency"),
    CheckConstraint("kind IN ('wallet', 'merchant', 'funding', 'platform')", name="kind"),
    CheckConstraint(
        "debits_posted >= 0 AND credits_posted >= 0 AND debits_pending >= 0 "
        "AND credits_pending >= 0",
        name="counters",
    ),
    # The database's own copy of "a wallet never goes below zero".
    CheckConstraint(
        "kind NOT IN ('wallet', 'merchant') "
        "OR credits_posted - debits_posted - debits_pending >= 0",
        name="never_negative",
    ),
)

ledger_transfers = Table(
    "ledger_transfers",
    metadata,
    Column(
        "seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("id", String(80), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),
    Column("debit_account_id", String(ID), nullable=False),
    Column("credit_account_id", String(ID), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("code", String(32), nullable=False),
    Column("pending_id", String(80), unique=True),  # a hold is resolved at most once
    Column("expires_at", TS),
    Column("reference", String(80)),
    Column("created_at", TS, nullable=False),
    CheckConstraint("amount_minor > 0", name="positive"),
    CheckConstraint("debit_account_id <> credit_account_id", name="two_accounts"),
    CheckConstraint(
        "kind IN ('posted', 'pending', 'post_pending', 'void_pending', 'expire_pending')",
        name="kind",
    ),
    CheckConstraint(
        "(kind IN ('posted', 'pending')) = (pending_id IS NULL)", name="resolves_a_hold"
    ),
    ForeignKeyConstraint(
        ["debit_account_id", "currency"], ["ledger_accounts.id", "ledger_accounts.currency"]
    ),
    ForeignKeyConstraint(
        ["credit_account_id", "currency"], ["ledger_accounts.id", "ledger_accounts.currency"]
    ),
    Index("ix_ledger_transfers_debit", "debit_account_id", "seq"),
    Index("ix_ledger_transfers_credit", "credit_account_id", "seq"),
    Index("ix_ledger_transfers_expiring", "expires_at"),
)

payments = Table(
    "payments",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("merchant_id", String(ID), ForeignKey("merchants.id"), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("description", String(bounds.DESCRIPTION_LENGTH_MAX), nullable=False),
    Column("reference", String(bounds.REFERENCE_LENGTH_MAX)),
    Column("capture_method", String(16), nullable=False),
    Column("status", String(32), nullable=False),
    Column("payer_id", String(ID), ForeignKey("users.id")),
    Column("amount_captured_minor", BigInteger, nullable=False),
    Column("amount_refunded_minor", BigInteger, nullable=False),
    Column("spend_period", String(7)),
    Column("series_ref", String(bounds.REFERENCE_LENGTH_MAX)),  # a recurring series (Art. 14)
    Column("hold_seq", Integer, nullable=False, server_default="0"),  # holds placed so far
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    CheckConstraint("amount_minor > 0", name="positive"),
    CheckConstraint("hold_seq >= 0", name="hold_seq"),
    CheckConstraint(
        "amount_refunded_minor >= 0 AND amount_refunded_minor <= amount_captured_minor "
        "AND amount_captured_minor <= amount_minor",
        name="refund_within_capture",
    ),
    CheckConstraint(
        "status IN ('requires_confirmation', 'requires_action', 'in_review', 'authorized', "
        "'succeeded', 'canceled', 'declined', 'expired')",
        name="status",
    ),
    Index("ix_payments_merchant_created", "merchant_id", "created_at", "id"),
    Index("ix_payments_status_created", "status", "created_at", "id"),  # the review queue
)

refunds = Table(
    "refunds",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("payment_id", String(ID), ForeignKey("payments.id"), nullable=False, index=True),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("reason", String(bounds.REASON_LENGTH_MAX)),
    Column("transfer_id", String(80), nullable=False, unique=True),
    Column("created_at", TS, nullable=False),
    CheckConstraint("amount_minor > 0", name="positive"),
)

spend_counters = Table(
    "spend_counters",
    metadata,
    Column("user_id", String(ID), primary_key=True),
    Column("currency", String(3), primary_key=True),
    Column("period", String(7), primary_key=True),
    Column("amount_minor", BigInteger, nullable=False),
    CheckConstraint("amount_minor >= 0", name="non_negative"),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("scope", String(ID + 8), primary_key=True),
    Column("key", String(bounds.IDEMPOTENCY_KEY_LENGTH_MAX), primary_key=True),
    Column("fingerprint", LargeBinary(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("response_status", Integer),
    Column("response_body", Text),
    Column("locked_until", TS),
    Column("created_at", TS, nullable=False),
    Column("expires_at", TS, nullable=False, index=True),
    CheckConstraint("status IN ('in_flight', 'completed')", name="status"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column(
        "seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    ),
    Column("at", TS, nullable=False),
    Column("event", String(64), nullable=False),
    Column("actor", String(80), nullable=False),
    Column("subject", String(80), nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("hash", LargeBinary(32), nullable=False),
)

# One row: the last sequence number and hash. Appending locks it, so the chain is linear even
# with many writers, and truncation of the log shows as a head that points past its end.
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("hash", LargeBinary(32), nullable=False),
    CheckConstraint("id = 1", name="single_row"),
)

# The transactional outbox: a message is written in the same transaction as the event it reports
# and delivered later by a leased job, so no transaction waits on SMTP and none is retried into
# sending twice. It names the user, not an address: the address is read (and decrypted) only when
# the message is sent, so it is stored once, encrypted, in ``users``.
outbound_email = Table(
    "outbound_email",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("user_id", String(ID), ForeignKey("users.id"), nullable=False),
    Column("subject", String(200), nullable=False),
    # Encrypted, bound to the row: a message may carry a one-time code.
    Column("body_ciphertext", LargeBinary, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("next_attempt_at", TS, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("sent_at", TS),
    Column("last_error", String(500)),
    Index("ix_outbound_email_due", "sent_at", "next_attempt_at"),
)

jobs = Table(
    "jobs",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("interval_s", Integer, nullable=False),
    Column("run_at", TS, nullable=False),
    Column("leased_until", TS),
    Column("lease_owner", String(64)),
    Column("runs", BigInteger, nullable=False),
    Column("last_error", Text),
    Column("last_finished_at", TS),
)


# ---- authentication: devices, authenticators, flows, replay records ------------------------------

devices = Table(
    "devices",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("user_id", String(ID), ForeignKey("users.id"), nullable=False, index=True),
    Column("name", String(bounds.DEVICE_NAME_LENGTH_MAX), nullable=False),
    Column("platform", String(bounds.PLATFORM_LENGTH_MAX), nullable=False),
    # The device key: its RFC 7638 thumbprint (unique: one key binds one device) and public JWK.
    Column("jkt", String(bounds.JKT_LENGTH), nullable=False, unique=True),
    Column("public_jwk", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", TS, nullable=False),  # first seen
    Column("last_seen_at", TS, nullable=False),
    Column("reduced_until", TS),  # a new device's reduced limits end here
    Column("removed_at", TS),
    # What it said it keeps its keys in (domain.device_classes); it only narrows its paths.
    Column("device_class", String(16), nullable=False, server_default="platform"),
    CheckConstraint("status IN ('active', 'removed')", name="status"),
    CheckConstraint("(status = 'removed') = (removed_at IS NOT NULL)", name="removed_when_removed"),
    CheckConstraint("device_class IN ('platform', 'key_store', 'software')", name="device_class"),
)

authenticators = Table(
    "authenticators",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("user_id", String(ID), ForeignKey("users.id"), nullable=False, index=True),
    Column("kind", String(32), nullable=False),
    Column("label", String(bounds.LABEL_LENGTH_MAX), nullable=False),
    Column("status", String(16), nullable=False),
    # TOTP or OCRA seed, phone number or a device PIN's argon2id hash, encrypted under the
    # KeyRing and bound to this row.
    Column("secret_ciphertext", LargeBinary),
    # WebAuthn: credential id (unique across users), COSE public key, signature counter.
    Column("credential_id", LargeBinary(bounds.CREDENTIAL_ID_BYTES_MAX), unique=True),
    Column("public_key", LargeBinary),
    Column("sign_count", BigInteger, nullable=False),
    Column("clone_signals", Integer, nullable=False),
    # TOTP: the last accepted time step; only a later step is accepted (replay record).
    Column("last_step", BigInteger),
    Column("ocra_suite", String(bounds.OCRA_SUITE_LENGTH_MAX)),  # OCRA: RFC 6287 suite
    Column("device_id", String(ID), ForeignKey("devices.id")),
    # While pending: the WebAuthn challenge or the keyed hash of the SMS code that confirms it.
    Column("pending_secret", LargeBinary(64)),
    Column("pending_expires_at", TS),
    Column("created_at", TS, nullable=False),
    Column("last_used_at", TS),
    Column("removed_at", TS),
    CheckConstraint("kind IN ('totp', 'passkey', 'sms_otp', 'ocra', 'pin')", name="kind"),
    CheckConstraint("status IN ('pending', 'active', 'removed')", name="status"),
    CheckConstraint("sign_count >= 0 AND clone_signals >= 0", name="counts"),
)

# Recovery codes carry 80 random bits, so a keyed hash (the KeyRing's blind index) protects
# them as well as argon2 would and lets a code be found in one lookup.
recovery_codes = Table(
    "recovery_codes",
    metadata,
    Column("user_id", String(ID), ForeignKey("users.id"), primary_key=True),
    Column("code_hash", LargeBinary(32), primary_key=True),
    Column("created_at", TS, nullable=False),
    Column("used_at", TS),
)

# Which questions a user chose is itself a hint to an attacker, so the key is a slot number and
# the question id is sealed under the user's key, bound to (user, slot) and padded to one length.
security_answers = Table(
    "security_answers",
    metadata,
    Column("user_id", String(ID), ForeignKey("users.id"), primary_key=True),
    Column("slot", Integer, primary_key=True, autoincrement=False),
    Column("question_ciphertext", LargeBinary, nullable=False),
    Column("answer_hash", String(255), nullable=False),  # argon2id of the normalised answer
    Column("created_at", TS, nullable=False),
    CheckConstraint("slot >= 1", name="slot"),
)

auth_flows = Table(
    "auth_flows",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("point", String(32), nullable=False),
    Column("user_id", String(ID), ForeignKey("users.id")),
    Column("state", String(16), nullable=False),
    Column("paths", Text, nullable=False),  # JSON: [["password", "totp"], ...]
    Column("done", Text, nullable=False),  # JSON: [{"factor": ..., "at": ...}]
    Column("attempts_left", Integer, nullable=False),
    Column("issued_at", TS, nullable=False),
    Column("expires_at", TS, nullable=False, index=True),
    Column("binding", Text, nullable=False),  # JSON: what the flow is bound to
    Column("challenge", LargeBinary(64)),  # the WebAuthn challenge in play
    Column("code_hash", LargeBinary(32)),  # the email or SMS code in play (keyed hash)
    Column("code_factor", String(32)),
    Column("code_expires_at", TS),
    Column("code_sends", Integer, nullable=False),
    Column("approval_code", String(8)),  # number matching for a device approval
    Column("approved_by", String(ID)),  # the bound device that approved
    Column("approval_state", String(16)),
    Column("updated_at", TS, nullable=False),
    # While an answer is being checked: a second answer waits its turn (is refused) until then.
    Column("busy_until", TS),
    CheckConstraint("state IN ('active', 'complete', 'failed')", name="state"),
    CheckConstraint("attempts_left >= 0 AND code_sends >= 0", name="counts"),
    CheckConstraint(
        "approval_state IS NULL OR approval_state IN ('requested', 'approved', 'denied')",
        name="approval_state",
    ),
)

# Each DPoP proof is accepted once (RFC 9449 §11.1); a row lives until the proof's window ends.
dpop_proofs = Table(
    "dpop_proofs",
    metadata,
    Column("jkt", String(bounds.JKT_LENGTH), primary_key=True),
    Column("jti", String(bounds.JTI_LENGTH_MAX), primary_key=True),
    Column("expires_at", TS, nullable=False, index=True),
)

# Fixed-window counters shared by every process: login attempts per IP and per account,
# approval requests per user (push bombing), codes sent.
rate_counters = Table(
    "rate_counters",
    metadata,
    Column("key", String(160), primary_key=True),
    Column("window_start", TS, primary_key=True),
    Column("count", Integer, nullable=False),
    Column("expires_at", TS, nullable=False, index=True),
)

# ---- risk ---------------------------------------------------------------------------------------

# What the risk engine remembers about one user, device (key thumbprint), IP or payee: a JSON
# document, locked (FOR UPDATE) by each event that reads and changes it.
risk_records = Table(
    "risk_records",
    metadata,
    Column("kind", String(8), primary_key=True),
    Column("subject", String(160), primary_key=True),
    Column("body", Text, nullable=False),
    Column("updated_at", TS, nullable=False),
    CheckConstraint("kind IN ('user', 'device', 'ip', 'payee')", name="kind"),
    Index("ix_risk_records_updated", "updated_at"),  # forgetting idle records
)

# Every live decision: the event, the action, score, reasons, factors and the rules' version.
# A challenge stays pending until the flow that asks for its factors passes or fails.
risk_assessments = Table(
    "risk_assessments",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("user_subject", String(160), nullable=False),
    Column("event_type", String(24), nullable=False),
    Column("ref", String(ID)),  # the flow or payment it decided
    Column("action", String(16), nullable=False),
    Column("score", Integer, nullable=False),
    Column("reasons", Text, nullable=False),  # JSON list of codes
    Column("factors", Text, nullable=False),  # JSON list of factors
    Column("config_version", String(64), nullable=False),
    Column("event", Text, nullable=False),  # JSON: the event as scored
    Column("state", String(16), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("settled_at", TS),
    CheckConstraint("action IN ('allow', 'challenge', 'review', 'block')", name="action"),
    CheckConstraint("state IN ('settled', 'pending', 'passed', 'failed', 'used')", name="state"),
    CheckConstraint("score >= 0 AND score <= 100", name="score"),
    Index("ix_risk_assessments_user_created", "user_subject", "created_at"),
    Index("ix_risk_assessments_ref", "ref"),
)

# A user's consents to the risk engine's signal groups (domain.consents): one row per user and
# group once the user chose (no row: given), with when it last changed; every change is audited.
consents = Table(
    "consents",
    metadata,
    Column("user_id", String(ID), ForeignKey("users.id"), primary_key=True),
    Column("signal_group", String(16), primary_key=True),
    Column("given", Boolean, nullable=False),
    Column("changed_at", TS, nullable=False),
    CheckConstraint("signal_group IN ('location', 'behaviour')", name="signal_group"),
)

# Operators are accounts with roles: support reads, risk decides (least privilege).
operator_roles = Table(
    "operator_roles",
    metadata,
    Column("user_id", String(ID), ForeignKey("users.id"), primary_key=True),
    Column("role", String(16), primary_key=True),
    Column("granted_at", TS, nullable=False),
    Column("granted_by", String(160), nullable=False),
    CheckConstraint("role IN ('support', 'risk')", name="role"),
)

# ---- merchant events ----------------------------------------------------------------------------

# What happened to a payment, written in the transaction that changed it (a transactional
# outbox): a payment that commits always has its event, one that does not never has. The id is
# the event's stable identity, for deliveries and de-duplication by the merchant.
# ---- SCA exemptions (PSD2 RTS Art. 13, 14, 16) ------------------------------------------------

# The payer's exempt payments since the last successful SCA: one row per payer, locked by every
# confirmation, so two racing payments cannot both be the fifth.
sca_counters = Table(
    "sca_counters",
    metadata,
    Column("user_id", String(ID), ForeignKey("users.id"), primary_key=True),
    Column("exempt_count", Integer, nullable=False),
    Column("spent", Text, nullable=False),  # JSON: {"EUR": 2500, ...} minor units per currency
    Column("last_sca_at", TS),
    Column("updated_at", TS, nullable=False),
    CheckConstraint("exempt_count >= 0", name="count"),
)

# Every confirmation's decision: which exemption applied, or why SCA was required.
sca_decisions = Table(
    "sca_decisions",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("payment_id", String(ID), ForeignKey("payments.id"), nullable=False, index=True),
    Column("user_id", String(ID), ForeignKey("users.id"), nullable=False),
    Column("exemption", String(32)),
    Column("reasons", Text, nullable=False),  # JSON list of stable reasons
    Column("profile", String(32), nullable=False),
    Column("flow_id", String(ID)),
    Column("outcome", String(16), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    CheckConstraint(
        "outcome IN ('exempt', 'challenged', 'authenticated', 'failed')", name="outcome"
    ),
    Index("ix_sca_decisions_user_created", "user_id", "created_at"),
)

trusted_beneficiaries = Table(
    "trusted_beneficiaries",
    metadata,
    Column("user_id", String(ID), ForeignKey("users.id"), primary_key=True),
    Column("merchant_id", String(ID), ForeignKey("merchants.id"), primary_key=True),
    Column("session_id", String(ID), nullable=False),  # the session whose SCA added it
    Column("created_at", TS, nullable=False),
)

recurring_series = Table(
    "recurring_series",
    metadata,
    Column("merchant_id", String(ID), ForeignKey("merchants.id"), primary_key=True),
    Column("series_ref", String(bounds.REFERENCE_LENGTH_MAX), primary_key=True),
    Column("user_id", String(ID), ForeignKey("users.id"), primary_key=True),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("first_payment_id", String(ID), ForeignKey("payments.id"), nullable=False),
    Column("created_at", TS, nullable=False),
    CheckConstraint("amount_minor > 0", name="positive"),
)

payment_events = Table(
    "payment_events",
    metadata,
    # The order events were written in: per payment, the order the merchant should apply them.
    Column(
        "seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("id", String(ID), nullable=False, unique=True),
    Column("merchant_id", String(ID), ForeignKey("merchants.id"), nullable=False),
    Column("payment_id", String(ID), ForeignKey("payments.id"), nullable=False),
    Column("type", String(40), nullable=False),
    Column("body", Text, nullable=False),  # JSON, exactly as it is delivered
    Column("created_at", TS, nullable=False),
    CheckConstraint(
        "type IN ('payment.succeeded', 'payment.authorized', 'payment.in_review', "
        "'payment.failed', 'payment.canceled', 'payment.refunded', 'payment.requires_action')",
        name="type",
    ),
    Index("ix_payment_events_merchant_seq", "merchant_id", "seq"),
    Index("ix_payment_events_payment_seq", "payment_id", "seq"),
)

# ---- merchant webhooks --------------------------------------------------------------------------

# Where a merchant wants its events. A disabled endpoint is kept (its log stays readable) and
# receives nothing more.
webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("merchant_id", String(ID), ForeignKey("merchants.id"), nullable=False),
    Column("url", String(bounds.WEBHOOK_URL_LENGTH_MAX), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("disabled_at", TS),
    CheckConstraint("status IN ('active', 'disabled')", name="status"),
    CheckConstraint(
        "(status = 'disabled') = (disabled_at IS NOT NULL)", name="disabled_when_disabled"
    ),
    Index("ix_webhook_endpoints_merchant_created", "merchant_id", "created_at", "id"),
)

# Signing secrets, encrypted under the key ring and bound to their row. A rotation adds one and
# gives the ones before it an end, so both sign while the merchant switches over.
webhook_secrets = Table(
    "webhook_secrets",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("endpoint_id", String(ID), ForeignKey("webhook_endpoints.id"), nullable=False),
    Column("secret_ciphertext", LargeBinary, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("expires_at", TS),  # unset: signs until a rotation gives it an end
    CheckConstraint("expires_at IS NULL OR expires_at >= created_at", name="period"),
    Index("ix_webhook_secrets_endpoint_created", "endpoint_id", "created_at"),
)

# One event for one endpoint: made once by the fan-out (the unique pair is the guard against a
# second), leased by one worker at a time, and started afresh by a manual redelivery.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("event_id", String(ID), ForeignKey("payment_events.id"), nullable=False),
    Column("endpoint_id", String(ID), ForeignKey("webhook_endpoints.id"), nullable=False),
    Column("merchant_id", String(ID), ForeignKey("merchants.id"), nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),  # in the current schedule
    Column("next_attempt_at", TS, nullable=False),
    Column("leased_until", TS),
    Column("lease_owner", String(64)),
    Column("created_at", TS, nullable=False),
    Column("finished_at", TS),  # delivered or given up
    UniqueConstraint("event_id", "endpoint_id", name="uq_webhook_deliveries_event_endpoint"),
    CheckConstraint("state IN ('pending', 'delivered', 'given_up')", name="state"),
    CheckConstraint("attempts >= 0", name="attempts"),
    CheckConstraint("(state = 'pending') = (finished_at IS NULL)", name="finished_when_done"),
    Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
    Index("ix_webhook_deliveries_endpoint_created", "endpoint_id", "created_at", "id"),
    Index("ix_webhook_deliveries_merchant_event", "merchant_id", "event_id"),
)

# Every attempt, as the merchant's delivery log shows it: an HTTP status, or the error class.
webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column(
        "seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("delivery_id", String(ID), ForeignKey("webhook_deliveries.id"), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("started_at", TS, nullable=False),
    Column("duration_ms", Integer, nullable=False),
    Column("status_code", Integer),
    Column("error", String(64)),
    CheckConstraint("status_code IS NOT NULL OR error IS NOT NULL", name="answered_or_why_not"),
    Index("ix_webhook_attempts_delivery_seq", "delivery_id", "seq"),
)

# One row: how far the fan-out has read payment_events, and the holes it jumped (JSON), which
# a transaction that committed late may still fill (see domain.webhooks.advance_cursor).
webhook_fanout = Table(
    "webhook_fanout",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("last_seq", BigInteger, nullable=False),
    Column("gaps", Text, nullable=False),  # JSON: [[first_seq, last_seq, seen_at], ...]
    Column("updated_at", TS, nullable=False),
    CheckConstraint("id = 1", name="single_row"),
)

# ---- erasure (GDPR Art. 17) and what anti-money-laundering law keeps -----------------------------

# An erased user's email address, sealed under the user's retention key (not the personal key that
# erasure destroys) until ``retained_until``, when the retention key is destroyed in turn. One row
# per erased user, written in the transaction that marks the user erased.
aml_retention = Table(
    "aml_retention",
    metadata,
    Column("user_id", String(ID), ForeignKey("users.id"), primary_key=True),
    Column("email_ciphertext", LargeBinary, nullable=False),
    Column("erased_at", TS, nullable=False),
    Column("retained_until", TS, nullable=False),
    CheckConstraint("retained_until > erased_at", name="period"),
)

# ---- the platform's fraud rate (PSD2 RTS Art. 18-20; domain.fraud) ------------------------------

# A payment reported as fraud: a refund the merchant flagged fraudulent, or a chargeback. One per
# payment and kind, so a report sent twice counts once; ``counted_minor`` is what the report adds
# to the payment's fraud value (a payment is fraudulent once, however many ways it is reported).
fraud_reports = Table(
    "fraud_reports",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("payment_id", String(ID), ForeignKey("payments.id"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("counted_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("reporter", String(16), nullable=False),
    Column("reported_by", String(80), nullable=False),
    Column("reason", String(bounds.OPERATOR_REASON_LENGTH_MAX)),
    Column("reported_at", TS, nullable=False),
    UniqueConstraint("payment_id", "kind", name="uq_fraud_reports_payment_kind"),
    CheckConstraint("kind IN ('refund_fraud', 'chargeback')", name="kind"),
    CheckConstraint("reporter IN ('merchant', 'operator', 'cli')", name="reporter"),
    CheckConstraint(
        "amount_minor > 0 AND counted_minor >= 0 AND counted_minor <= amount_minor",
        name="amounts",
    ),
    Index("ix_fraud_reports_reported", "reported_at"),  # a day's or a quarter's reports
)

# A closed UTC day or calendar quarter. Its figures are final once stored; the primary key makes
# closing it idempotent, whichever process gets there first.
fraud_periods = Table(
    "fraud_periods",
    metadata,
    Column("kind", String(8), primary_key=True),
    Column("starts_at", TS, primary_key=True),
    Column("ends_at", TS, nullable=False),
    Column("closed_at", TS, nullable=False),
    CheckConstraint("kind IN ('day', 'quarter')", name="kind"),
    CheckConstraint("ends_at > starts_at", name="span"),
)

# A closed period's value captured and value of fraud reported, per currency, in minor units.
fraud_period_totals = Table(
    "fraud_period_totals",
    metadata,
    Column("kind", String(8), primary_key=True),
    Column("starts_at", TS, primary_key=True),
    Column("currency", String(3), primary_key=True),
    Column("captured_minor", BigInteger, nullable=False),
    Column("fraud_minor", BigInteger, nullable=False),
    ForeignKeyConstraint(["kind", "starts_at"], ["fraud_periods.kind", "fraud_periods.starts_at"]),
    CheckConstraint("captured_minor >= 0 AND fraud_minor >= 0", name="non_negative"),
)

# Closing a day sums the payments captured in it: the ledger read by transfer code and time.
Index("ix_ledger_transfers_code_created", ledger_transfers.c.code, ledger_transfers.c.created_at)

# -- the key vault (adapters.vault) ---------------------------------------------------------------
# One row: the vault's shape. The root key is never stored: ``root_check`` is a constant sealed
# under it (a rebuilt root that does not open it is wrong) and ``share_commitments`` holds
# SHA-256 of each share, so a corrupted share is refused when it is submitted.
vault_meta = Table(
    "vault_meta",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("vault_id", String(ID), nullable=False, unique=True),
    Column("shares", Integer, nullable=False),
    Column("threshold", Integer, nullable=False),
    Column("root_check", LargeBinary, nullable=False),
    Column("share_commitments", Text, nullable=False),  # JSON: hex digests, index 1 first
    Column("generation", Integer, nullable=False),  # the key version new data keys get
    Column("seal_epoch", Integer, nullable=False),  # raised by ``vault seal``: every process seals
    Column("development", Integer, nullable=False),  # 1: auto-unsealed from a local file
    Column("created_at", TS, nullable=False),
    Column("rotated_at", TS),
    CheckConstraint("id = 1", name="single"),
    CheckConstraint("threshold >= 1 AND threshold <= shares", name="threshold"),
    CheckConstraint("generation >= 1 AND seal_epoch >= 0", name="counters"),
)

# Data keys, each sealed under the root key. Purpose keys have subject ''; a user's personal and
# AML retention keys name the user. Destroying a key removes its wrapped copy for good.
vault_keys = Table(
    "vault_keys",
    metadata,
    Column("id", LargeBinary(16), primary_key=True),
    Column("purpose", String(32), nullable=False),
    Column("subject", String(ID), nullable=False),
    Column("version", Integer, nullable=False),
    Column("wrapped", LargeBinary),
    Column("state", String(16), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("destroy_after", TS),
    Column("destroyed_at", TS),
    UniqueConstraint("purpose", "subject", "version", name="uq_vault_keys_purpose_version"),
    CheckConstraint("state IN ('active', 'retired', 'destroyed')", name="state"),
    CheckConstraint(
        "(state = 'destroyed') = (wrapped IS NULL AND destroyed_at IS NOT NULL)",
        name="destroyed_has_no_key",
    ),
)
Index("ix_vault_keys_destroy_after", vault_keys.c.destroy_after)

# Every running process, sealed or not, with a fresh X25519 key that lives only in its memory:
# shares and the root key travel to a sealed process sealed to that key.
vault_peers = Table(
    "vault_peers",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("public_key", LargeBinary(32), nullable=False),
    Column("proof", LargeBinary(32)),  # HMAC under the peer secret: a peer row not forged
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("sealed", Integer, nullable=False),
    Column("started_at", TS, nullable=False),
    Column("seen_at", TS, nullable=False),
)

# A custodian's share, sealed to one sealed process's key, waiting for the rest of the quorum.
vault_share_drops = Table(
    "vault_share_drops",
    metadata,
    Column("peer_id", String(ID), primary_key=True),
    Column("share_index", Integer, primary_key=True),
    Column("sealed_share", LargeBinary, nullable=False),
    Column("submitted_by", String(80), nullable=False),
    Column("submitted_at", TS, nullable=False),
    Column("seal_epoch", Integer, nullable=False),
    Column("mac", LargeBinary(32), nullable=False),  # HMAC under the peer secret
)

# The root key sealed by an unsealed process to a sealed one's key; deleted on pickup or expiry.
vault_transfers = Table(
    "vault_transfers",
    metadata,
    Column("peer_id", String(ID), primary_key=True),
    Column("sealed_root", LargeBinary, nullable=False),
    Column("from_peer", String(ID), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("expires_at", TS, nullable=False),
    Column("seal_epoch", Integer, nullable=False),
    Column("mac", LargeBinary(32), nullable=False),  # HMAC under the peer secret
)

# A key custodian's credential for the unseal API (the share itself never authenticates anyone).
vault_custodians = Table(
    "vault_custodians",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("name", String(80), nullable=False, unique=True),
    Column("token_hash", LargeBinary(32), nullable=False, unique=True),
    Column("created_at", TS, nullable=False),
    Column("revoked_at", TS),
)

# ---- tokenized payment instruments (domain.instruments) ------------------------------------------

# A card or a carrier-billing phone number, sealed under its owner's personal key (erasure
# crypto-shreds it) and bound to its row. The token is stored only as SHA-256 (it carries 256
# random bits), so a copy of this table hands out no usable token; ``number_index`` is the blind
# index over (owner, number) that finds a duplicate without reading any number. Removal wipes the
# number and keeps the row, which charges and the ledger still name.
instruments = Table(
    "instruments",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("user_id", String(ID), ForeignKey("users.id"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("token_hash", LargeBinary(32), nullable=False, unique=True),
    Column("number_index", LargeBinary(32)),
    Column("number_ciphertext", LargeBinary),
    Column("display_ciphertext", LargeBinary),  # "Visa •••• 4242", "+82 ••••••5678"
    Column("brand", String(16)),  # cards only: what the card's number range says
    Column("exp_month", Integer),
    Column("exp_year", Integer),
    Column("status", String(16), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("removed_at", TS),
    UniqueConstraint("user_id", "number_index", name="uq_instruments_user_number"),
    CheckConstraint("kind IN ('card', 'carrier')", name="kind"),
    CheckConstraint("status IN ('active', 'removed')", name="status"),
    CheckConstraint("(status = 'removed') = (removed_at IS NOT NULL)", name="removed_when_removed"),
    CheckConstraint(
        "(status = 'active') = (number_ciphertext IS NOT NULL AND number_index IS NOT NULL "
        "AND display_ciphertext IS NOT NULL)",
        name="wiped_when_removed",
    ),
    CheckConstraint(
        "(kind = 'card') = (exp_month IS NOT NULL AND exp_year IS NOT NULL)", name="card_expiry"
    ),
    CheckConstraint("exp_month IS NULL OR (exp_month >= 1 AND exp_month <= 12)", name="month"),
    Index("ix_instruments_user_status", "user_id", "status"),
)

# A merchant token (card on file): this merchant may charge this instrument. Like the payer's
# token it is stored only as SHA-256.
instrument_grants = Table(
    "instrument_grants",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("instrument_id", String(ID), ForeignKey("instruments.id"), nullable=False),
    Column("merchant_id", String(ID), ForeignKey("merchants.id"), nullable=False),
    Column("token_hash", LargeBinary(32), nullable=False, unique=True),
    Column("status", String(16), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("revoked_at", TS),
    CheckConstraint("status IN ('active', 'revoked')", name="status"),
    CheckConstraint("(status = 'revoked') = (revoked_at IS NOT NULL)", name="revoked_when_revoked"),
    Index("ix_instrument_grants_instrument_status", "instrument_id", "status"),
)

# The cryptogram key of one instrument on one bound device, sealed under the owner's key. Only
# a counter above ``last_counter`` is accepted (a conditional UPDATE in the charge's
# transaction); consecutive failures lock the key as they lock a factor (domain.lockout).
instrument_device_keys = Table(
    "instrument_device_keys",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("instrument_id", String(ID), ForeignKey("instruments.id"), nullable=False),
    Column("device_id", String(ID), ForeignKey("devices.id"), nullable=False),
    # The instrument's owner, whose key seals this one: each sealed row names its subject.
    Column("user_id", String(ID), ForeignKey("users.id"), nullable=False),
    Column("key_ciphertext", LargeBinary),
    Column("last_counter", BigInteger, nullable=False),
    Column("failures", Integer, nullable=False),
    Column("locks", Integer, nullable=False),
    Column("locked_until", TS),
    Column("locked_permanently", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("last_used_at", TS),
    Column("removed_at", TS),
    CheckConstraint("status IN ('active', 'removed')", name="status"),
    CheckConstraint("(status = 'removed') = (removed_at IS NOT NULL)", name="removed_when_removed"),
    CheckConstraint(
        "(status = 'active') = (key_ciphertext IS NOT NULL)", name="wiped_when_removed"
    ),
    CheckConstraint("last_counter >= 0 AND failures >= 0 AND locks >= 0", name="counts"),
    Index("ix_instrument_device_keys_instrument_status", "instrument_id", "status"),
)

# Every charge of a merchant token, succeeded or declined. The unique (key, counter) pair is the
# database's own copy of "a cryptogram pays once"; a succeeded charge names its ledger transfer.
charges = Table(
    "charges",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("merchant_id", String(ID), ForeignKey("merchants.id"), nullable=False),
    Column("grant_id", String(ID), ForeignKey("instrument_grants.id"), nullable=False),
    Column("instrument_id", String(ID), ForeignKey("instruments.id"), nullable=False),
    Column("device_key_id", String(ID), ForeignKey("instrument_device_keys.id"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("counter", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("decline_code", String(32)),
    Column("transfer_id", String(80), unique=True),
    Column("created_at", TS, nullable=False),
    UniqueConstraint("device_key_id", "counter", name="uq_charges_device_key_counter"),
    CheckConstraint("amount_minor > 0 AND counter > 0", name="positive"),
    CheckConstraint("status IN ('succeeded', 'declined')", name="status"),
    CheckConstraint("(status = 'succeeded') = (transfer_id IS NOT NULL)", name="paid_when_paid"),
    CheckConstraint("(status = 'declined') = (decline_code IS NOT NULL)", name="declined_why"),
    Index("ix_charges_merchant_created", "merchant_id", "created_at", "id"),
)

# The sandbox carrier's monthly bill per payer (the carrier's own cap, STANDARDS.md: KRW 1,000,000
# a month), counted where every API process sees it.
carrier_billing_totals = Table(
    "carrier_billing_totals",
    metadata,
    Column("user_id", String(ID), ForeignKey("users.id"), primary_key=True),
    Column("currency", String(3), primary_key=True),
    Column("period", String(7), primary_key=True),
    Column("amount_minor", BigInteger, nullable=False),
    CheckConstraint("amount_minor >= 0", name="non_negative"),
)

# Skip-and-return onboarding (domain.onboarding): one row per user and step once the user skips
# or completes it (no row: pending). ``reminders_sent`` counts the spent entries of the schedule
# since the last skip, so each scheduled reminder is sent at most once.
onboarding_steps = Table(
    "onboarding_steps",
    metadata,
    Column("user_id", String(ID), ForeignKey("users.id"), primary_key=True),
    Column("step", String(16), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("updated_at", TS, nullable=False),
    Column("skipped_at", TS),
    Column("completed_at", TS),
    Column("reminders_sent", Integer, nullable=False),
    CheckConstraint("step IN ('bind_device', 'passkey', 'second_factor')", name="step"),
    CheckConstraint("status IN ('pending', 'skipped', 'completed')", name="status"),
    CheckConstraint("(status = 'completed') = (completed_at IS NOT NULL)", name="completed_when"),
    CheckConstraint("status <> 'skipped' OR skipped_at IS NOT NULL", name="skipped_when"),
    CheckConstraint("reminders_sent >= 0 AND reminders_sent <= 5", name="reminders"),
    Index("ix_onboarding_steps_status_skipped", "status", "skipped_at"),
)

# Account recoveries once their flow's factors passed (domain.recovery): held for an operator or
# ready, then completed (the device bound, the cooling-off period running) or reported ("this
# wasn't me": the account frozen). ``jkt`` is the key of the device that ran the flow: only it
# completes the recovery.
RECOVERY_STATES = ("held", "ready", "approved", "denied", "completed", "reported")
recoveries = Table(
    "recoveries",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("user_id", String(ID), ForeignKey("users.id"), nullable=False),
    Column("flow_id", String(ID), nullable=False, unique=True),
    Column("state", String(16), nullable=False),
    Column("factors", String(200), nullable=False),
    Column("jkt", String(64), nullable=False),
    Column("new_device", Boolean, nullable=False),
    Column("password_replaced", Boolean, nullable=False),
    # The device that ran the flow, as it will be bound: the recovery outlives its flow (held
    # for days, the flow is purged a day after it ends).
    Column("device_name", String(bounds.DEVICE_NAME_LENGTH_MAX), nullable=False),
    Column("platform", String(bounds.PLATFORM_LENGTH_MAX), nullable=False),
    Column("device_class", String(16), nullable=False),  # as the device stated it
    Column("public_jwk", Text, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("passed_at", TS, nullable=False),  # when the flow's last factor passed
    Column("expires_at", TS, nullable=False),
    Column("risk_reasons", String(500), nullable=False),
    Column("device_id", String(ID)),
    Column("cooling_until", TS),
    Column("decided_by", String(ID)),
    Column("decided_at", TS),
    Column("decision_reason", String(bounds.OPERATOR_REASON_LENGTH_MAX)),
    Column("completed_at", TS),
    Column("reported_at", TS),
    CheckConstraint(
        "state IN (" + ", ".join(f"'{s}'" for s in RECOVERY_STATES) + ")", name="state"
    ),
    CheckConstraint(
        "state IN ('completed', 'reported') OR completed_at IS NULL", name="completed_only"
    ),
    CheckConstraint("state <> 'completed' OR completed_at IS NOT NULL", name="completed_when"),
    CheckConstraint("cooling_until IS NULL OR completed_at IS NOT NULL", name="cooling_after"),
    Index("ix_recoveries_user_created", "user_id", "created_at"),
    Index("ix_recoveries_state_created", "state", "created_at"),
)
