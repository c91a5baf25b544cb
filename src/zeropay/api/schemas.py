"""Request bodies. Strict: unknown fields are refused, types are not coerced (``"12"`` is not 12,
``12.0`` is not 12), and every string is checked for characters that have no place in it."""

from __future__ import annotations

import unicodedata
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, StrictStr

from zeropay.domain import bounds

# Bidirectional overrides and isolates let a description display differently from what it says
# ("what you see is what you sign" would be a lie), so they are refused like control characters.
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")


def _clean_text(value: str) -> str:
    for ch in value:
        category = unicodedata.category(ch)
        if category in {"Cc", "Cs", "Co", "Cn"} or ch in _BIDI:
            raise ValueError("text contains a control, surrogate or direction-override character")
    return unicodedata.normalize("NFC", value).strip()


def _visible(value: str) -> str:
    # Checked after trimming: "   " is not a description a payer can read.
    if not value:
        raise ValueError("text needs at least one visible character")
    return value


Clean = AfterValidator(_clean_text)
Visible = AfterValidator(_visible)
Description = Annotated[StrictStr, Field(max_length=bounds.DESCRIPTION_LENGTH_MAX), Clean, Visible]
Reference = Annotated[StrictStr, Field(max_length=bounds.REFERENCE_LENGTH_MAX), Clean]
Reason = Annotated[StrictStr, Field(max_length=bounds.REASON_LENGTH_MAX), Clean]
Label = Annotated[StrictStr, Field(max_length=bounds.API_KEY_LABEL_LENGTH_MAX), Clean, Visible]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class MoneyIn(Strict):
    amount: StrictInt = Field(description="Integer count of minor units, e.g. 1250 for 12.50 USD")
    currency: StrictStr = Field(min_length=3, max_length=3, description="ISO 4217 code, e.g. USD")


class PaymentCreate(MoneyIn):
    description: Description = Field(description="What the payer sees and confirms")
    reference: Reference | None = Field(default=None, description="The merchant's own reference")
    capture_method: Literal["automatic", "manual"] = "automatic"
    series_ref: Reference | None = Field(
        default=None,
        description="The merchant's id for a recurring series (same amount, same payer): after "
        "the payer confirms the first with SCA, the rest may skip it (PSD2 RTS Art. 14)",
    )


class Capture(Strict):
    amount: StrictInt | None = None


class RefundCreate(Strict):
    amount: StrictInt | None = Field(
        default=None, description="Minor units; all that is left by default"
    )
    reason: Reason | None = None


class BeneficiaryIn(Strict):
    merchant_id: StrictStr = Field(max_length=bounds.ID_LENGTH_MAX)


class TopUp(MoneyIn):
    source: Literal["test_card", "test_card_declined"] = "test_card"


class Registration(Strict):
    email: StrictStr = Field(max_length=bounds.EMAIL_INPUT_LENGTH_MAX)
    password: StrictStr = Field(max_length=bounds.PASSWORD_INPUT_LENGTH_MAX)


class Credentials(Strict):
    email: StrictStr = Field(max_length=bounds.EMAIL_INPUT_LENGTH_MAX)
    password: StrictStr = Field(max_length=bounds.PASSWORD_INPUT_LENGTH_MAX)


class ApiKeyCreate(Strict):
    scopes: list[StrictStr] = Field(min_length=1, max_length=bounds.API_KEY_SCOPES_MAX)
    label: Label = "api key"
