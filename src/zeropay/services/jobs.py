"""Periodic jobs leased through the database, so that with many processes each due job runs in
exactly one of them at a time, and a process that dies mid-job loses its lease when it runs out."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from zeropay.domain import bounds
from zeropay.services import erasure, fraud, mail, onboarding, payments, webhooks
from zeropay.services.context import AppContext, UnitOfWork

log = logging.getLogger("zeropay.jobs")

JOB_LEASE_S = 120


@dataclass(frozen=True)
class Job:
    name: str
    interval_s: int
    run: Callable[[AppContext], int]


def _purge_idempotency_keys(ctx: AppContext) -> int:
    return ctx.run(
        lambda uow: uow.idempotency.purge_expired(ctx.now(), limit=bounds.IDEMPOTENCY_PURGE_BATCH)
    )


def _purge_replay_records(ctx: AppContext) -> int:
    """DPoP jtis and rate counters whose window closed, and flows a day past their expiry (kept
    that long so a late answer still meets "expired", not "no such flow")."""
    now = ctx.now()

    def work(uow: UnitOfWork) -> int:
        flows = uow.flows.purge_expired(now - timedelta(days=1), limit=bounds.REPLAY_PURGE_BATCH)
        return flows + uow.replay.purge(now, limit=bounds.REPLAY_PURGE_BATCH)

    return ctx.run(work)


def _purge_risk_records(ctx: AppContext) -> int:
    """Device, IP and payee records idle for longer than the longest window of the rules: they
    can no longer fire a signal (a flood of invented device ids or addresses must not grow the
    table without end). Users' own baselines are kept."""
    if ctx.risk is None:
        return 0
    idle_s = max(ctx.risk.config.windows.values())
    before = ctx.now() - timedelta(seconds=idle_s)
    return ctx.run(lambda uow: uow.risk.purge_idle(before, limit=bounds.REPLAY_PURGE_BATCH))


JOBS: tuple[Job, ...] = (
    Job("expire_holds", 30, lambda ctx: payments.expire_holds(ctx)),
    Job("purge_idempotency_keys", 600, _purge_idempotency_keys),
    Job("purge_replay_records", 300, _purge_replay_records),
    Job("send_email", 5, lambda ctx: mail.deliver_due(ctx)),
    Job("purge_risk_records", 3600, _purge_risk_records),
    # The fraud rate's days and quarters (PSD2 RTS Art. 18-20), closed soon after they end.
    Job("close_fraud_periods", 600, lambda ctx: fraud.close_periods(ctx)),
    # Fan-out first: an event made since the last tick is delivered in this one.
    Job("fan_out_webhooks", 5, lambda ctx: webhooks.fan_out(ctx).deliveries),
    Job("deliver_webhooks", 5, lambda ctx: webhooks.deliver_due(ctx, owner="job")),
    # Erased users' AML retention keys, destroyed once their retention period has ended.
    Job("end_retention", 3600, lambda ctx: erasure.end_retention(ctx)),
    # Skipped onboarding steps whose scheduled reminder is due (notification and email).
    Job("onboarding_reminders", 600, lambda ctx: onboarding.send_reminders(ctx)),
)


def register(ctx: AppContext) -> None:
    def work(uow: UnitOfWork) -> None:
        for job in JOBS:
            uow.jobs.ensure(job.name, job.interval_s, ctx.now())

    ctx.run(work)


def run_due(ctx: AppContext, *, owner: str) -> dict[str, int]:
    """Run every job that is due and whose lease this process wins. Returns work done per job."""
    done: dict[str, int] = {}
    for job in JOBS:
        if not _lease(ctx, job, owner):
            continue
        error = None
        try:
            done[job.name] = job.run(ctx)
        except Exception as exc:  # a failing job must not stop the others; it is recorded
            log.exception("job %s failed", job.name)
            error = f"{type(exc).__name__}: {exc}"[:500]
        _finish(ctx, job, owner, error)
    return done


def _lease(ctx: AppContext, job: Job, owner: str) -> bool:
    def work(uow: UnitOfWork) -> bool:
        lease = timedelta(seconds=JOB_LEASE_S)
        return bool(uow.jobs.lease(job.name, owner=owner, now=ctx.now(), lease=lease))

    return ctx.run(work)


def _finish(ctx: AppContext, job: Job, owner: str, error: str | None) -> None:
    def work(uow: UnitOfWork) -> None:
        now = ctx.now()
        uow.jobs.finish(
            job.name,
            owner=owner,
            now=now,
            error=error,
            next_run_at=now + timedelta(seconds=job.interval_s),
        )

    ctx.run(work)
