"""Onboarding with skip-and-return over HTTP, on SQLite and PostgreSQL: the payer skips the
steps after sign-up, is reminded on schedule, and is stopped when policy makes a step required;
binding the phone completes the steps; operators read the same state; the funnel counters move."""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY
from sqlalchemy import text

from support.mfa import PASSWORD, Device, Mfa, signed_up
from support.sca import bill, confirm, exemption_of, payer, shop
from zeropay.adapters.clock import FixedClock
from zeropay.domain.onboarding import Step, StepStatus
from zeropay.services import accounts, jobs, mail, onboarding, operators

EMAIL = "ana@example.com"


def _steps(phone: Device) -> dict[str, Any]:
    r = phone.call("GET", "/v1/me/onboarding")
    assert r.status_code == 200, r.text
    return r.json()


def _status(body: dict[str, Any]) -> dict[str, str]:
    return {s["step"]: s["status"] for s in body["steps"]}


def _skip(phone: Device, step: str) -> Any:
    return phone.call("POST", f"/v1/me/onboarding/{step}/skip")


def _password_login(mfa: Mfa, phone: Device, email: str = EMAIL) -> None:
    """Sign in again with the password and an emailed code (the phone is not bound)."""
    r = mfa.start(phone, "login", email=email)
    assert r.status_code == 201, r.text
    flow_id = r.json()["id"]
    r = mfa.step(phone, flow_id, "password", password=PASSWORD)
    assert r.status_code == 200, r.text
    r = phone.call("POST", f"/v1/auth/flows/{flow_id}/codes", {"factor": "email_otp"}, token="")
    assert r.status_code == 202, r.text
    r = mfa.step(phone, flow_id, "email_otp", code=mfa.code_for(email))
    assert r.status_code == 201, r.text
    phone.token = r.json()["token"]


def _funnel(step: str, event: str) -> float:
    got = REGISTRY.get_sample_value(
        "zeropay_onboarding_steps_total", {"step": step, "event": event}
    )
    return got or 0.0


def test_sign_up_starts_with_every_step_pending_and_asks_for_a_passkey_first(
    cumulative: Mfa,
) -> None:
    phone = signed_up(cumulative, EMAIL)
    body = _steps(phone)
    assert _status(body) == {
        "bind_device": "pending",
        "passkey": "pending",
        "second_factor": "pending",
    }
    assert body["next_required"]["step"] == "passkey"
    assert body["next_required"]["required_for_payments_above_low_value"] is True
    assert body["next_required"]["required_for_all_payments_at"].startswith("2026-11-16")


def test_skip_then_reminder_then_required_end_to_end(cumulative: Mfa, clock: FixedClock) -> None:
    mfa = cumulative
    cafe = shop(mfa, "Corner Cafe")
    phone = signed_up(mfa, EMAIL)
    r = phone.call("POST", "/v1/wallet/topups", {"amount": 20000, "currency": "EUR"})
    assert r.status_code == 201, r.text
    assert _skip(phone, "bind_device").status_code == 200
    body = _skip(phone, "passkey").json()
    assert _status(body) == {
        "bind_device": "skipped",
        "passkey": "skipped",
        "second_factor": "pending",
    }
    assert {s["step"]: s["next_reminder_at"] for s in body["steps"]}["passkey"].startswith(
        "2026-11-03T09:30"
    )

    # A low-value payment goes through: sign-up asked for what it needs.
    assert exemption_of(confirm(phone, bill(mfa, cafe, 500, "EUR"))) == "low_value"
    # Above the low-value ceiling (EUR 30), the skipped step is required.
    r = confirm(phone, bill(mfa, cafe, 5000, "EUR"))
    assert r.status_code == 403, r.text
    assert r.json()["code"] == "onboarding_required"
    assert (r.json()["step"], r.json()["reason"]) == ("passkey", "above_low_value")

    # A day later the reminders go out, once each.
    ctx = mfa.container.ctx
    assert onboarding.send_reminders(ctx) == 0
    clock.advance(days=1)
    assert onboarding.send_reminders(ctx) == 2
    assert onboarding.send_reminders(ctx) == 0
    mail.deliver_due(ctx)
    bodies = [body for _, body in mfa.inbox.bodies_to(EMAIL)]
    assert sum("You skipped a step" in b for b in bodies) == 2

    # Two weeks after sign-up every payment needs the steps, however small.
    clock.advance(days=13)
    # The job was down: the day-3 and day-7 reminders are overdue, one message per step.
    assert onboarding.send_reminders(ctx) == 2
    assert onboarding.send_reminders(ctx) == 0
    _password_login(mfa, phone)
    kinds = [n["kind"] for n in phone.call("GET", "/v1/me/notifications").json()["data"]]
    assert kinds.count("onboarding.reminder") == 4
    r = confirm(phone, bill(mfa, cafe, 500, "EUR"))
    assert r.status_code == 403, r.text
    assert (r.json()["step"], r.json()["reason"]) == ("passkey", "account_age")

    # Binding the phone (a passkey is made on it) completes both steps; the payment goes on.
    r = mfa.bind(phone, EMAIL)
    assert r.status_code == 201, r.text
    body = _steps(phone)
    assert _status(body) == {
        "bind_device": "completed",
        "passkey": "completed",
        "second_factor": "pending",
    }
    assert body["next_required"] is None
    r = confirm(phone, bill(mfa, cafe, 500, "EUR"))
    assert r.status_code == 200, r.text
    clock.advance(days=30)
    assert onboarding.send_reminders(ctx) == 0  # completed steps are never reminded


def test_reminders_follow_the_schedule_and_stop_after_the_last(
    cumulative: Mfa, clock: FixedClock
) -> None:
    phone = signed_up(cumulative, EMAIL)
    assert _skip(phone, "second_factor").status_code == 200
    ctx = cumulative.container.ctx
    sent = []
    for _ in range(11):
        clock.advance(days=1)
        sent.append(onboarding.send_reminders(ctx))
    # Days 1, 3 and 7 after the skip; nothing after the last.
    assert sent == [1, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0]


def test_a_completed_or_unknown_step_cannot_be_skipped(cumulative: Mfa) -> None:
    phone = signed_up(cumulative, EMAIL)
    r = _skip(phone, "fingerprint")
    assert r.status_code == 404, r.text
    r = cumulative.bind(phone, EMAIL)
    assert r.status_code == 201, r.text
    r = _skip(phone, "passkey")
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "invalid_state"


def test_a_skip_and_a_completion_move_the_funnel_counters(cumulative: Mfa) -> None:
    before = {
        (s, e): _funnel(s, e)
        for s in ("bind_device", "passkey")
        for e in ("started", "skipped", "completed")
    }
    phone = signed_up(cumulative, EMAIL)
    assert _skip(phone, "passkey").status_code == 200
    assert cumulative.bind(phone, EMAIL).status_code == 201
    moved = {k: _funnel(*k) - v for k, v in before.items()}
    assert moved == {
        ("bind_device", "started"): 1,
        ("bind_device", "skipped"): 0,
        ("bind_device", "completed"): 1,
        ("passkey", "started"): 1,
        ("passkey", "skipped"): 1,
        ("passkey", "completed"): 1,
    }
    text = cumulative.client.get("/metrics").text
    assert 'zeropay_onboarding_steps_total{event="skipped",step="passkey"}' in text


def test_an_operator_reads_a_users_onboarding_and_the_read_is_audited(cumulative: Mfa) -> None:
    mfa = cumulative
    phone = signed_up(mfa, EMAIL)
    assert _skip(phone, "second_factor").status_code == 200
    user_id = _steps(phone)["user_id"]
    r = phone.call("GET", f"/v1/operator/users/{user_id}/onboarding")
    assert r.status_code == 403, r.text  # a payer is no operator
    staff = payer(mfa, "ops@example.com")
    operators.grant(mfa.container.ctx, email="ops@example.com", role="support", actor="test")
    r = staff.call("GET", f"/v1/operator/users/{user_id}/onboarding")
    assert r.status_code == 200, r.text
    assert _status(r.json())["second_factor"] == "skipped"
    r = staff.call("GET", "/v1/operator/users/usr_nobody/onboarding")
    assert r.status_code == 404, r.text


def test_the_leased_job_sends_a_due_reminder_once_across_processes(
    cumulative: Mfa, clock: FixedClock
) -> None:
    phone = signed_up(cumulative, EMAIL)
    assert _skip(phone, "passkey").status_code == 200
    user_id = _steps(phone)["user_id"]
    ctx = cumulative.container.ctx
    jobs.register(ctx)
    clock.advance(days=1)
    first = jobs.run_due(ctx, owner="process-a")
    second = jobs.run_due(ctx, owner="process-b")  # the lease is taken: the job does not run
    assert first["onboarding_reminders"] == 1
    assert "onboarding_reminders" not in second
    clock.advance(seconds=600)
    assert jobs.run_due(ctx, owner="process-b")["onboarding_reminders"] == 0
    kinds = [n.kind for n in accounts.notifications(ctx, user_id)]
    assert kinds.count("onboarding.reminder") == 1


def test_an_account_that_is_not_active_is_not_reminded(cumulative: Mfa, clock: FixedClock) -> None:
    phone = signed_up(cumulative, EMAIL)
    assert _skip(phone, "passkey").status_code == 200
    user_id = _steps(phone)["user_id"]
    with cumulative.container.engine.begin() as c:
        c.execute(text("UPDATE users SET status = 'frozen' WHERE id = :id"), {"id": user_id})
    clock.advance(days=1)
    ctx = cumulative.container.ctx
    assert onboarding.send_reminders(ctx) == 0
    assert [n.kind for n in accounts.notifications(ctx, user_id)].count("onboarding.reminder") == 0


def test_confirming_an_authenticator_app_completes_the_second_factor_step(cumulative: Mfa) -> None:
    phone = signed_up(cumulative, EMAIL)
    user_id = _skip(phone, "second_factor").json()["user_id"]
    assert cumulative.bind(phone, EMAIL).status_code == 201
    before = _funnel("second_factor", "completed")
    cumulative.enroll_totp(phone)
    # Recorded by the enrollment itself, before anyone reads the onboarding.
    ctx = cumulative.container.ctx
    stored = ctx.read(lambda uow: uow.onboarding.states(user_id))
    assert stored[Step.SECOND_FACTOR].status is StepStatus.COMPLETED
    assert _funnel("second_factor", "completed") - before == 1
    assert _status(_steps(phone))["second_factor"] == "completed"


def test_without_sca_exemptions_only_the_account_age_makes_a_step_required(
    mfa: Mfa, clock: FixedClock
) -> None:
    """With the exemptions off there is no low-value ceiling for the rule to apply to, and the
    view says only the account-age rule applies."""
    phone = signed_up(mfa, EMAIL)
    body = _steps(phone)
    assert body["next_required"]["required_for_payments_above_low_value"] is False
    assert body["next_required"]["why"].startswith("every payment needs it from 2026-11-16")
