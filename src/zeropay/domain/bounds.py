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

# -- pages and batches ----------------------------------------------------------------------------
PAGE_SIZE_MAX = 100
SESSIONS_LISTED_MAX = 100
NOTIFICATIONS_LISTED_MAX = 50
HOLD_EXPIRY_BATCH = 100
EMAIL_SEND_BATCH = 50
IDEMPOTENCY_PURGE_BATCH = 1000
LEDGER_SCAN_CHUNK = 5000  # rows fetched at a time by `ledger verify` and `audit verify`

# -- retries --------------------------------------------------------------------------------------
TRANSACTION_ATTEMPTS_MAX = 8

invariant(EMAIL_LENGTH_MAX <= EMAIL_INPUT_LENGTH_MAX, "normalised email fits the raw bound")
invariant(
    4 * (DESCRIPTION_LENGTH_MAX + REFERENCE_LENGTH_MAX) < BODY_BYTES_DEFAULT,
    "the largest valid payment request fits the default body limit, even in 4-byte UTF-8",
)
invariant(PAGE_SIZE_MAX <= LEDGER_SCAN_CHUNK, "a page is never bigger than a scan chunk")
invariant(SESSIONS_LISTED_MAX >= 1 and NOTIFICATIONS_LISTED_MAX >= 1, "lists show something")
invariant(1 <= TRANSACTION_ATTEMPTS_MAX <= 16, "retries are few: contention is not hidden")
