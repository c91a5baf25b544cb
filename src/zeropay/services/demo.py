"""Seed a demo: two payers with funded wallets and a merchant with an API key."""

from __future__ import annotations

from zeropay.domain.errors import EmailTaken
from zeropay.domain.money import Money
from zeropay.services import accounts, merchants, wallet
from zeropay.services.context import AppContext

DEMO_PAYERS = (
    ("alice@example.com", "correct horse battery"),
    ("bob@example.com", "tr0ub4dor&3 staple"),
)
DEMO_FUNDS = (Money.of(20_000, "USD"), Money.of(300_000, "KRW"))


def seed(ctx: AppContext) -> str:
    lines = ["ZeroPay demo", ""]
    for email, password in DEMO_PAYERS:
        try:
            user = accounts.register(ctx, email=email, password=password)
        except EmailTaken:
            lines.append(f"payer {email} already exists (password: {password})")
            continue
        for amount in DEMO_FUNDS:
            wallet.top_up(
                ctx,
                user_id=user.user_id,
                amount=amount,
                source="test_card",
                transfer_id=f"demo-topup:{user.user_id}:{amount.currency.code}",
            )
        lines.append(
            f"payer    {email}  password: {password}  wallet: "
            + ", ".join(str(m) for m in DEMO_FUNDS)
        )
    merchant_id, key = merchants.create_merchant(ctx, name="Demo Coffee", actor="demo", mcc="5814")
    lines += [
        f"merchant Demo Coffee ({merchant_id})",
        f"  API key: {key.secret}",
        "",
        "Try:  curl -s -X POST http://localhost:8000/v1/payments \\",
        f"        -H 'Authorization: Bearer {key.secret}' -H 'Content-Type: application/json' \\",
        '        -d \'{"amount": 450, "currency": "USD", "description": "Flat white"}\'',
        "then open http://localhost:8000/pay/<the payment's id> to pay it in the browser",
        "(sign up and bind the browser first: http://localhost:8000/signup).",
    ]
    return "\n".join(lines)
