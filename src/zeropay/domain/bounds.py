"""Every bound on external input and on work per step, in one place.

Loops over client input, pages, batches and retries are all bounded, and the relations between
the bounds are stated here where they are defined (TigerBeetle's TIGER_STYLE). Column widths in
``adapters/sql/tables.py`` come from the same names, so a value that passes validation always fits.
"""

from __future__ import annotations

from zeropay.domain.errors import invariant

# -- text a client sends --------------------------------------------------------------------------
EMAIL_LENGTH_MAX = 254  # RFC 5321 path limit, after normalisation
EMAIL_INPUT_LENGTH_MAX = 320  # before normalisation (local part 64 + @ + domain 255)
PASSWORD_INPUT_LENGTH_MAX = 4096  # before NFKC; domain.passwords caps the normalised length
DESCRIPTION_LENGTH_MAX = 500
REFERENCE_LENGTH_MAX = 128
REASON_LENGTH_MAX = 200
MERCHANT_NAME_LENGTH_MAX = 128
API_KEY_LABEL_LENGTH_MAX = 64
API_KEY_SCOPES_MAX = 8
USER_AGENT_LENGTH_MAX = 256
IDEMPOTENCY_KEY_LENGTH_MAX = 255  # Stripe's limit
ID_LENGTH_MAX = 40  # our ids: prefix_ + 26 base32 characters
BODY_BYTES_DEFAULT = 64 * 1024
DEVICE_NAME_LENGTH_MAX = 64
PLATFORM_LENGTH_MAX = 32
LABEL_LENGTH_MAX = 64
JKT_LENGTH = 43  # base64url of a SHA-256 digest, no padding (RFC 7638)
JTI_LENGTH_MAX = 128
DPOP_PROOF_LENGTH_MAX = 4096
CREDENTIAL_ID_BYTES_MAX = 1023  # WebAuthn L3 §5.8.3 credential ids are at most 1023 bytes
WEBAUTHN_RESPONSE_BYTES_MAX = 16 * 1024
SECURITY_ANSWER_LENGTH_MAX = 200
PIN_LENGTH_MAX = 16  # digits of a device PIN (domain.pins); the policy sets the minimum
PHONE_LENGTH_MAX = 20  # E.164: "+" and at most 15 digits, with room for spaces
OPERATOR_REASON_LENGTH_MAX = 500  # why an operator approved or declined, kept in the audit log
# X-Forwarded-For, read right to left (domain.network): nothing further left is ever read.
IP_ADDRESS_TEXT_LENGTH_MAX = 45  # ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255
FORWARDED_ENTRY_LENGTH_MAX = IP_ADDRESS_TEXT_LENGTH_MAX + len("[]:65535")
FORWARDED_FOR_ENTRIES_MAX = 32  # hops walked; a real chain of proxies has a handful
FORWARDED_FOR_LENGTH_MAX = 2048  # characters of the joined header lines, from the right

# -- pages and batches ----------------------------------------------------------------------------
PAGE_SIZE_MAX = 100
SESSIONS_LISTED_MAX = 100
NOTIFICATIONS_LISTED_MAX = 50
DEVICES_PER_USER_MAX = 20
AUTHENTICATORS_PER_USER_MAX = 20
APPROVALS_LISTED_MAX = 20
OPERATORS_LISTED_MAX = 1000  # role grants `zeropay operator list` prints
REVIEW_DECISIONS_LISTED_MAX = 20  # risk decisions shown with one payment held for review
RECOVERY_CODES = 10
SECURITY_QUESTIONS_REQUIRED = 2
REPLAY_PURGE_BATCH = 1000
HOLD_EXPIRY_BATCH = 100
EMAIL_SEND_BATCH = 50
IDEMPOTENCY_PURGE_BATCH = 1000
LEDGER_SCAN_CHUNK = 5000  # rows fetched at a time by `ledger verify` and `audit verify`

# -- settings -------------------------------------------------------------------------------------
TRUSTED_PROXIES_MAX = 64  # networks in ZEROPAY_TRUSTED_PROXIES, each checked per hop

# -- retries --------------------------------------------------------------------------------------
TRANSACTION_ATTEMPTS_MAX = 8

invariant(EMAIL_LENGTH_MAX <= EMAIL_INPUT_LENGTH_MAX, "normalised email fits the raw bound")
invariant(
    4 * (DESCRIPTION_LENGTH_MAX + REFERENCE_LENGTH_MAX) < BODY_BYTES_DEFAULT,
    "the largest valid payment request fits the default body limit, even in 4-byte UTF-8",
)
invariant(PAGE_SIZE_MAX <= LEDGER_SCAN_CHUNK, "a page is never bigger than a scan chunk")
invariant(SESSIONS_LISTED_MAX >= 1 and NOTIFICATIONS_LISTED_MAX >= 1, "lists show something")
invariant(
    WEBAUTHN_RESPONSE_BYTES_MAX < BODY_BYTES_DEFAULT, "a passkey response fits the body limit"
)
invariant(DPOP_PROOF_LENGTH_MAX < BODY_BYTES_DEFAULT, "a DPoP proof fits any header budget")
invariant(1 <= TRANSACTION_ATTEMPTS_MAX <= 16, "retries are few: contention is not hidden")
invariant(
    FORWARDED_FOR_ENTRIES_MAX * (FORWARDED_ENTRY_LENGTH_MAX + len(", "))
    <= FORWARDED_FOR_LENGTH_MAX,
    "the length cap never cuts a chain of well-formed hops short of the entry cap",
)

# -- OCRA (RFC 6287) ------------------------------------------------------------------------------
# What a client says its device signed: base64url of the canonical transaction data (ids, amount,
# currency, nonce: a few hundred bytes at most).
SIGNED_TRANSACTION_LENGTH_MAX = 1024
# A confirmation flow remembers this many earlier passkey ceremonies (their nonces), so that an
# answer to one of them is a stale answer, not a proof over another transaction.
CONFIRMATION_NONCES_KEPT = 4
OCRA_SUITE_LENGTH_MAX = 64  # the longest suite RFC 6287 §6 allows has 46 characters
OCRA_DRIFT_STEPS_MAX = 2  # time steps either side of now an OCRA code may be computed at

# -- merchant webhooks ----------------------------------------------------------------------------
WEBHOOK_URL_LENGTH_MAX = 2048  # what browsers and most servers accept in a request line
WEBHOOK_ENDPOINTS_PER_MERCHANT_MAX = 16  # active endpoints; each event is sent to every one
WEBHOOK_SECRETS_VALID_MAX = 3  # signing secrets at once: one v1 each in every delivery's header
WEBHOOK_OVERLAP_S_MAX = 7 * 86400  # how long a rotated-out secret may keep signing
WEBHOOK_FANOUT_BATCH = 500  # outbox events read per fan-out transaction
WEBHOOK_FANOUT_ROUNDS_MAX = 20  # fan-out transactions per run of the job, while behind
WEBHOOK_FANOUT_GAPS_MAX = 200  # sequence gaps watched for a late commit
# A gap in payment_events.seq is an event whose transaction has not committed yet, or one that
# rolled back. It is watched this long; a transaction still open after that is not waited for.
WEBHOOK_FANOUT_GAP_WAIT_S = 600
WEBHOOK_DELIVERY_BATCH = 50  # attempts per run of the delivery job
WEBHOOK_DELIVERY_RUN_S = 30  # a run claims no new delivery after this long
WEBHOOK_ATTEMPT_TIMEOUT_S = 5  # each of connect, TLS, write and every read
WEBHOOK_ATTEMPT_DEADLINE_S = 15  # one whole attempt, whatever the receiver trickles
WEBHOOK_LEASE_S = 60  # a claimed delivery is another worker's to take after this
WEBHOOK_RESPONSE_BYTES_MAX = 4096  # read of a receiver's answer, then the connection is closed
WEBHOOK_ATTEMPTS_LISTED_MAX = 30  # attempts shown with each delivery, newest first
WEBHOOK_EVENT_DELIVERIES_MAX = WEBHOOK_ENDPOINTS_PER_MERCHANT_MAX * 4  # listed for one event

invariant(
    WEBHOOK_ATTEMPT_TIMEOUT_S < WEBHOOK_ATTEMPT_DEADLINE_S,
    "a single slow step fails before the whole attempt's deadline",
)
invariant(
    2 * WEBHOOK_ATTEMPT_DEADLINE_S <= WEBHOOK_LEASE_S,
    "a lease outlives the attempt it covers, so no other worker sends the delivery meanwhile",
)
invariant(
    WEBHOOK_DELIVERY_RUN_S + WEBHOOK_ATTEMPT_DEADLINE_S < 120,
    "a delivery run ends well inside the job lease (services.jobs.JOB_LEASE_S)",
)
invariant(
    WEBHOOK_FANOUT_BATCH * WEBHOOK_ENDPOINTS_PER_MERCHANT_MAX <= 10_000,
    "one fan-out transaction writes a bounded number of deliveries",
)
invariant(PAGE_SIZE_MAX <= WEBHOOK_FANOUT_BATCH, "a page of events is never bigger than a batch")

# -- the platform's fraud rate (PSD2 RTS Art. 18-20; domain.fraud) --------------------------------
FRAUD_DAYS_CLOSED_PER_RUN = 100  # days the fraud job closes per run: a whole 90-day window fits
FRAUD_QUARTERS_KEPT = 8  # closed quarters read for the Art. 20 streak and shown in the history

# -- the key vault (adapters.vault) ---------------------------------------------------------------
VAULT_SHARES_MAX = 16  # custodians one vault can be split among
VAULT_SHARE_TEXT_MAX = 200  # a share as text: prefix, vault id, index, 43 characters, checksum
VAULT_SHARE_DROP_TTL_S = 3600  # a submitted share waits this long for the rest of the quorum
VAULT_PEER_STALE_S = 15  # a process not seen for this long is gone: no share or key goes to it
VAULT_TRANSFER_TTL_S = 60  # a root key wrapped for a sealed peer is deleted after this
VAULT_SYNC_INTERVAL_S = 1.0  # how often a process looks for shares, transfers and seal orders
VAULT_KEY_CACHE_MAX = 50_000  # unwrapped data keys one process keeps in memory
VAULT_KEY_CACHE_TTL_S = 60  # a destroyed key stays usable in other processes for at most this
VAULT_REWRAP_BATCH = 500  # rows re-encrypted per transaction by ``vault rewrap``
invariant(
    VAULT_PEER_STALE_S > 3 * VAULT_SYNC_INTERVAL_S,
    "a live process refreshes its peer row several times before it would count as gone",
)
invariant(
    VAULT_TRANSFER_TTL_S > VAULT_PEER_STALE_S,
    "a transfer outlives the peer's staleness window, so a slow peer can still collect it",
)

# -- erasure and AML retention (services.erasure) ------------------------------------------------
RETENTION_KEYS_DESTROYED_PER_RUN = 500  # retention keys past their period one job run destroys

# -- tokenized payment instruments (domain.instruments, adapters.funding) -------------------------
INSTRUMENTS_PER_USER_MAX = 10  # active instruments one payer holds; all listed on one page
GRANTS_PER_INSTRUMENT_MAX = 20  # merchants holding a token for one instrument
# Bound devices holding a cryptogram key for one instrument: a charge tries each of them.
DEVICE_KEYS_PER_INSTRUMENT_MAX = 5
CARD_NUMBER_INPUT_LENGTH_MAX = 40  # 19 digits with a space or a dash after each
CARD_EXPIRY_YEARS_AHEAD_MAX = 20  # no issuer prints an expiry further out
TOKEN_LENGTH_MAX = 64  # "mtok_" and 43 base64url characters, with room
# Detokenization (the funding adapter reading a number back) is counted in the database, per
# instrument and over the whole platform, in fixed windows: a flood of charges, or a bug that
# loops, cannot read numbers out of the vault faster than this.
DETOKENIZE_WINDOW_S = 60
DETOKENIZE_PER_INSTRUMENT_MAX = 20  # a payer's instrument charged 20 times in a minute is odd
DETOKENIZE_OVERALL_MAX = 6000  # 100 a second across all instruments
invariant(
    DEVICE_KEYS_PER_INSTRUMENT_MAX <= DEVICES_PER_USER_MAX,
    "a device key belongs to one bound device",
)
invariant(INSTRUMENTS_PER_USER_MAX <= PAGE_SIZE_MAX, "a payer's instruments fit one page")
invariant(
    DETOKENIZE_PER_INSTRUMENT_MAX <= DETOKENIZE_OVERALL_MAX,
    "one instrument never has more room than the platform",
)

# -- onboarding (domain.onboarding) ---------------------------------------------------------------
ONBOARDING_REMINDER_BATCH = 200  # skipped steps read per reminder job run (oldest skip first)

# -- privacy center (services.privacy) -------------------------------------------------------------
PRIVACY_VALUES_SHOWN_MAX = 20  # values per field on the privacy page; the export has them all
EXPORT_ROWS_PER_TABLE_MAX = 100_000  # a user's rows of one table in one export (marked truncated)
invariant(
    PRIVACY_VALUES_SHOWN_MAX <= EXPORT_ROWS_PER_TABLE_MAX,
    "the export holds at least what the privacy page shows",
)
