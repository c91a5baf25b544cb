"""SQL store of merchant events: rows written in the transaction that changed the payment."""

from __future__ import annotations

from sqlalchemy import insert, select

from zeropay.adapters.sql import tables as t
from zeropay.adapters.sql.repositories import _aware, _Repo
from zeropay.services.ports import PaymentEventRecord

_ADD = insert(t.payment_events)


class PaymentEventRepository(_Repo):
    def add(self, event: PaymentEventRecord) -> None:
        self.c.execute(
            _ADD,
            {
                "id": event.id,
                "merchant_id": event.merchant_id,
                "payment_id": event.payment_id,
                "type": event.type,
                "body": event.body,
                "created_at": event.created_at,
            },
        )

    def of_payment(self, payment_id: str) -> list[PaymentEventRecord]:
        e = t.payment_events.c
        rows = self.c.execute(
            select(t.payment_events).where(e.payment_id == payment_id).order_by(e.seq)
        ).all()
        return [
            PaymentEventRecord(
                id=r.id,
                merchant_id=r.merchant_id,
                payment_id=r.payment_id,
                type=r.type,
                body=r.body,
                created_at=_aware(r.created_at),
            )
            for r in rows
        ]
