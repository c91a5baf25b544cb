"""Authentication flows: step order, completion, attempts, the end of a flow, identification."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import zeropay
from zeropay.domain.errors import FlowEnded, FlowStepRefused, InvariantViolation
from zeropay.domain.factors import Factor
from zeropay.domain.flows import (
    FactorFailed,
    FactorPassed,
    Flow,
    FlowState,
    Identified,
    Narrowed,
    check_step,
    start_flow,
    transition,
)
from zeropay.domain.policy import AccessPoint, PointPolicy

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
PASSWORD, TOTP, PASSKEY, EMAIL, SMS = (
    Factor.PASSWORD,
    Factor.TOTP,
    Factor.PASSKEY,
    Factor.EMAIL_OTP,
    Factor.SMS_OTP,
)
APPROVAL = Factor.BOUND_DEVICE_APPROVAL


def _shipped_login_paths() -> tuple[tuple[Factor, ...], ...]:
    # Read from the shipped policy file itself rather than through parse_policy, so these tests
    # depend on the login table and nothing else in it.
    with (Path(zeropay.__file__).parent / "policies" / "default.toml").open("rb") as f:
        doc = tomllib.load(f)
    return tuple(tuple(Factor(name) for name in path) for path in doc["points"]["login"]["paths"])


LOGIN_PATHS = _shipped_login_paths()
LOGIN = PointPolicy(paths=LOGIN_PATHS)  # ttl_s 600, attempts_max 5 (RTS Art. 4(3)(b))
REGISTRATION = PointPolicy(
    paths=((EMAIL, PASSKEY, APPROVAL),), waived_when_unavailable=frozenset({APPROVAL})
)


def login_flow(
    paths: tuple[tuple[Factor, ...], ...] = ((PASSKEY,), (PASSWORD, TOTP)),
    user_id: str | None = "user-1",
) -> Flow:
    return start_flow(
        flow_id="flow-1",
        point=AccessPoint.LOGIN,
        rule=LOGIN,
        paths=paths,
        user_id=user_id,
        now=NOW,
    )


def run(flow: Flow, *events: FactorPassed | FactorFailed, now: datetime = NOW) -> Flow:
    for event in events:
        flow = transition(flow, event, now)
    return flow


def test_the_default_login_paths_are_the_documented_ones():
    assert LOGIN_PATHS == (
        (PASSKEY,),
        (PASSWORD, TOTP),
        (PASSWORD, EMAIL),
        (PASSWORD, APPROVAL),
        (PASSWORD, SMS),
        (Factor.DEVICE_KEY, Factor.PIN),  # a phone registered with a PIN (README: Older phones)
    )


def test_a_new_flow_offers_the_first_factor_of_every_path():
    flow = login_flow()
    assert flow.state is FlowState.ACTIVE
    assert flow.next_factors() == {PASSKEY, PASSWORD}
    assert flow.attempts_left == 5
    assert flow.expires_at == NOW + timedelta(seconds=600)
    assert flow.status(NOW) == "active"


def test_a_second_factor_before_the_first_is_refused_and_names_the_expected_ones():
    with pytest.raises(FlowStepRefused) as caught:
        transition(login_flow(), FactorPassed(TOTP), NOW)
    assert caught.value.details["next"] == ["passkey", "password"]


def test_a_factor_on_no_offered_path_is_refused():
    with pytest.raises(FlowStepRefused) as caught:
        check_step(login_flow(), SMS, NOW)
    assert caught.value.details["next"] == ["passkey", "password"]


def test_after_the_password_only_the_rest_of_its_path_may_follow():
    flow = run(login_flow(), FactorPassed(PASSWORD))
    assert flow.next_factors() == {TOTP}
    for factor in (PASSKEY, PASSWORD):
        with pytest.raises(FlowStepRefused) as caught:
            transition(flow, FactorPassed(factor), NOW)
        assert caught.value.details["next"] == ["totp"]


def test_a_failure_out_of_order_is_refused_and_costs_no_attempt():
    flow = login_flow()
    with pytest.raises(FlowStepRefused):
        transition(flow, FactorFailed(TOTP), NOW)
    assert flow.attempts_left == 5


def test_a_whole_path_in_order_completes_the_flow():
    later = NOW + timedelta(seconds=20)
    flow = run(login_flow(), FactorPassed(PASSWORD))
    assert flow.state is FlowState.ACTIVE
    flow = transition(flow, FactorPassed(TOTP), later)
    assert flow.state is FlowState.COMPLETE
    assert flow.status(later) == "complete"
    assert flow.done_factors == (PASSWORD, TOTP)
    assert [m.at for m in flow.done] == [NOW, later]
    assert flow.next_factors() == frozenset()


def test_a_passkey_alone_completes_a_login_flow():
    flow = run(login_flow(), FactorPassed(PASSKEY))
    assert flow.state is FlowState.COMPLETE
    assert flow.done_factors == (PASSKEY,)


def test_each_failure_costs_one_attempt_and_the_fifth_fails_the_flow():
    flow = login_flow()
    for left in (4, 3, 2, 1):
        flow = transition(flow, FactorFailed(PASSWORD), NOW)
        assert (flow.attempts_left, flow.state) == (left, FlowState.ACTIVE)
    flow = transition(flow, FactorFailed(PASSWORD), NOW)
    assert (flow.attempts_left, flow.state) == (0, FlowState.FAILED)
    assert flow.status(NOW) == "failed"


def test_failures_of_the_second_factor_count_against_the_same_attempts():
    flow = run(login_flow(), FactorPassed(PASSWORD), *[FactorFailed(TOTP)] * 5)
    assert (flow.attempts_left, flow.state) == (0, FlowState.FAILED)
    assert flow.done_factors == (PASSWORD,)


@pytest.mark.parametrize(
    "event", [FactorPassed(PASSKEY), FactorFailed(PASSKEY), FactorPassed(PASSWORD)]
)
def test_any_step_after_completion_ends_in_flow_ended(event):
    flow = run(login_flow(), FactorPassed(PASSKEY))
    with pytest.raises(FlowEnded) as caught:
        transition(flow, event, NOW)
    assert caught.value.details["reason"] == "complete"


@pytest.mark.parametrize(
    "event", [FactorPassed(PASSWORD), FactorFailed(PASSWORD), FactorPassed(PASSKEY)]
)
def test_any_step_after_failure_ends_in_flow_ended(event):
    flow = run(login_flow(), *[FactorFailed(PASSWORD)] * 5)
    with pytest.raises(FlowEnded) as caught:
        transition(flow, event, NOW)
    assert caught.value.details["reason"] == "failed"


@pytest.mark.parametrize("event", [FactorPassed(TOTP), FactorFailed(TOTP)])
def test_any_step_at_or_after_expiry_ends_in_flow_ended(event):
    flow = run(login_flow(), FactorPassed(PASSWORD))
    last_moment = flow.expires_at - timedelta(seconds=1)
    assert flow.status(last_moment) == "active"
    check_step(flow, TOTP, last_moment)
    for when in (flow.expires_at, flow.expires_at + timedelta(hours=1)):
        assert flow.status(when) == "expired"
        with pytest.raises(FlowEnded) as caught:
            transition(flow, event, when)
        assert caught.value.details["reason"] == "expired"


def test_identification_sets_the_user_and_the_paths_of_a_passkey_login():
    flow = login_flow(paths=((PASSKEY,),), user_id=None)
    flow = transition(flow, Identified("user-7", ((PASSKEY,), (PASSWORD, TOTP))), NOW)
    assert flow.user_id == "user-7"
    assert flow.paths == ((PASSKEY,), (PASSWORD, TOTP))
    assert run(flow, FactorPassed(PASSKEY)).state is FlowState.COMPLETE


def test_identification_as_another_user_is_a_bug():
    with pytest.raises(InvariantViolation):
        transition(login_flow(user_id="user-1"), Identified("user-2", ((PASSKEY,),)), NOW)


def test_identification_after_a_factor_is_a_bug():
    flow = run(login_flow(user_id=None), FactorPassed(PASSWORD))
    with pytest.raises(InvariantViolation):
        transition(flow, Identified("user-1", ((PASSWORD, TOTP),)), NOW)


def test_narrowing_keeps_the_users_paths_that_begin_with_the_factor_passing_now():
    flow = login_flow(paths=LOGIN_PATHS)  # an addressed flow offers every policy path
    narrowed = transition(flow, Narrowed(((PASSWORD, EMAIL),)), NOW)
    assert narrowed.next_factors() == {PASSWORD}
    after = run(narrowed, FactorPassed(PASSWORD))
    assert after.next_factors() == {EMAIL}  # the TOTP path the user lacks is gone
    with pytest.raises(FlowStepRefused):
        run(after, FactorPassed(TOTP))
    assert run(after, FactorPassed(EMAIL)).state is FlowState.COMPLETE


@pytest.mark.parametrize(
    "paths",
    [(), ((PASSKEY,), (TOTP, PASSWORD))],
    ids=["no_path", "path_ignoring_what_is_done"],
)
def test_narrowing_to_nothing_or_to_a_path_that_breaks_with_what_is_done_is_a_bug(paths):
    flow = run(login_flow(paths=LOGIN_PATHS), FactorPassed(PASSWORD))
    with pytest.raises(InvariantViolation):
        transition(flow, Narrowed(paths), NOW)


def test_an_ended_flow_cannot_narrow():
    flow = run(login_flow(), *[FactorFailed(PASSWORD)] * 5)
    with pytest.raises(FlowEnded):
        transition(flow, Narrowed(((PASSWORD, TOTP),)), NOW)


def test_a_flow_cannot_start_on_a_path_the_policy_does_not_name():
    with pytest.raises(InvariantViolation):
        login_flow(paths=((PASSWORD,),))


def test_a_registration_flow_may_start_on_the_path_without_the_waivable_factor():
    flow = start_flow(
        flow_id="flow-2",
        point=AccessPoint.DEVICE_REGISTRATION,
        rule=REGISTRATION,
        paths=((EMAIL, PASSKEY),),
        user_id="user-1",
        now=NOW,
    )
    assert run(flow, FactorPassed(EMAIL), FactorPassed(PASSKEY)).state is FlowState.COMPLETE


def test_a_registration_flow_cannot_drop_a_factor_that_is_not_waivable():
    with pytest.raises(InvariantViolation):
        start_flow(
            flow_id="flow-3",
            point=AccessPoint.DEVICE_REGISTRATION,
            rule=REGISTRATION,
            paths=((EMAIL, APPROVAL),),
            user_id="user-1",
            now=NOW,
        )


# ---- property: no sequence of events completes a flow without a whole path --------------------

# Weighted so that runs reach every ending: failures outnumber passes (or a first passkey would
# end most runs), the login factors come up more often than the rest, and some gaps are long
# enough to expire the flow. Any factor may still come, offered or not.
LIKELY = [PASSWORD, PASSKEY, TOTP, EMAIL]
events = st.lists(
    st.tuples(
        st.sampled_from([True, False, False]),  # passed or failed
        st.sampled_from(LIKELY * 2 + sorted(Factor)),
        st.sampled_from([0, 0, 0, 1, 10, 60, 300]),  # seconds since the previous event
    ),
    max_size=40,
)
offered = st.lists(st.sampled_from(LOGIN_PATHS), min_size=1, unique=True).map(tuple)


@settings(max_examples=400, deadline=None, database=None, print_blob=True)
@given(paths=offered, steps=events)
def test_no_sequence_of_events_completes_a_login_flow_without_one_whole_policy_path(paths, steps):
    flow = login_flow(paths=paths)
    now = NOW
    accepted: list[Factor] = []
    failures = 0
    for passed, factor, gap_s in steps:
        now += timedelta(seconds=gap_s)
        before = flow
        try:
            flow = transition(flow, FactorPassed(factor) if passed else FactorFailed(factor), now)
        except (FlowStepRefused, FlowEnded):
            assert flow == before
            continue
        # A step is taken only on a live flow, and only as the next factor of an offered path.
        assert before.state is FlowState.ACTIVE and not before.is_expired(now)
        assert factor in before.next_factors()
        if passed:
            accepted.append(factor)
        else:
            failures += 1
        assert 0 <= flow.attempts_left == LOGIN.attempts_max - failures
        assert flow.done_factors == tuple(accepted)
        if flow.state is FlowState.COMPLETE:
            assert flow.done_factors in paths
            assert flow.done_factors in LOGIN_PATHS
        else:
            assert any(p[: len(accepted)] == tuple(accepted) for p in paths)
            assert flow.done_factors not in paths
        assert (flow.state is FlowState.FAILED) == (flow.attempts_left == 0)
