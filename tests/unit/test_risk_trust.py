"""Trust scores: how a session or a device authenticated counts, and trust decays with time."""

from __future__ import annotations

from zeropay.bootstrap import load_risk_config
from zeropay.domain.risk.engine import device_trust
from zeropay.domain.risk.state import DeviceSeen, UserRisk
from zeropay.domain.risk.trust import HALF_LIFE_S, session_trust

CONFIG = load_risk_config()
DAY = 86400.0


def test_a_passkey_session_is_trusted_more_than_a_password_and_an_emailed_code():
    passkey = session_trust(["passkey"], authenticated_s=0, now_s=0, device_trust=0)
    weak = session_trust(["password", "email_otp"], authenticated_s=0, now_s=0, device_trust=0)
    assert passkey > weak > 0


def test_a_trusted_device_lends_the_session_part_of_its_trust():
    alone = session_trust(["password", "totp"], authenticated_s=0, now_s=0, device_trust=0)
    on_phone = session_trust(["password", "totp"], authenticated_s=0, now_s=0, device_trust=100)
    assert on_phone == alone + 30


def test_session_trust_halves_every_half_life_since_it_last_authenticated():
    start = session_trust(["passkey"], authenticated_s=0, now_s=0, device_trust=100)
    later = session_trust(["passkey"], authenticated_s=0, now_s=HALF_LIFE_S, device_trust=100)
    assert later == round(start / 2)
    assert (
        session_trust(["passkey"], authenticated_s=0, now_s=30 * HALF_LIFE_S, device_trust=100) == 0
    )


def test_device_trust_grows_with_age_and_a_strong_check_and_decays_when_unused():
    user = UserRisk()
    user.devices["phone"] = DeviceSeen(first_s=0, last_s=0, trusted=True, trusted_s=0, strong=True)
    user.devices["laptop"] = DeviceSeen(first_s=0, last_s=0, trusted=True, trusted_s=0)
    user.devices["stranger"] = DeviceSeen(first_s=0, last_s=0)
    assert device_trust(user, "phone", 0, CONFIG) > device_trust(user, "laptop", 0, CONFIG) > 0
    assert device_trust(user, "stranger", 0, CONFIG) == 0
    assert device_trust(user, "nobody", 0, CONFIG) == 0
    # Thirty days on with a check passing today: older is trusted more.
    user.devices["phone"].trusted_s = 30 * DAY
    assert device_trust(user, "phone", 30 * DAY, CONFIG) == 100
    # Unused for one half-life: half.
    half = CONFIG.limits["device_trust_half_life_s"]
    assert device_trust(user, "phone", 30 * DAY + half, CONFIG) == 50
