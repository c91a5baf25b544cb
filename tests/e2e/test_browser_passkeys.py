"""Passkeys in a real browser: headless Chromium drives the shipped pages against the real server:
signing up, binding, signing in, and paying at the hosted checkout page.

The server runs as ``make run`` runs it: ``zeropay serve`` on ``localhost`` with the shipped
default authentication policy, WebAuthn for RP ID ``localhost`` at the server's origin, mail over
SMTP to ``zeropay devmail`` and read back from ``GET /dev/mail``, here on a fresh PostgreSQL
database. Chromium gets a CDP virtual authenticator (CTAP2, internal, resident keys, user
verification) in place of a fingerprint reader. The pages sign every call with the browser's
non-extractable WebCrypto key (DPoP) and keep the session in ``__Host-`` cookies.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, CDPSession, Page, expect, sync_playwright

from support.mfa import CODE, PASSWORD
from support.servers import BIN, free_port, scratch_database, stop, zeropay_server

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
EMAIL = "ana@example.com"
CONSENTING = "cy@example.com"
MAIL_WAIT_S = 20  # the server's job loop sends mail every 5 s
UI_WAIT_MS = 15_000
STRICT_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
PAGES = ("/", "/signup", "/login", "/bind", "/account", "/pay/pay_01m6dsg7e0ps0m4jfgttnah98j")


def _wait_for_port(port: int) -> None:
    for _ in range(100):  # bounded: 10 s
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


@dataclass
class Server:
    url: str
    env: dict[str, str]

    def mail_code(self, email: str, seen: int) -> tuple[str, int]:
        """The code in the first message to ``email`` after the ``seen`` first ones, read from
        the development mail page (polled: the job loop sends mail every few seconds)."""
        deadline = time.monotonic() + MAIL_WAIT_S
        while time.monotonic() < deadline:
            newest_first = httpx.get(f"{self.url}/dev/mail", timeout=5).json()["data"]
            bodies = [m["body"] for m in reversed(newest_first) if email in (m["to"] or "")]
            for i in range(seen, len(bodies)):
                found = CODE.search(bodies[i])
                if found:
                    return found.group(1) + found.group(2), i + 1
            time.sleep(0.2)
        raise AssertionError(f"no code reached {email} within {MAIL_WAIT_S} s")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    smtp_port = free_port()
    mail_dir = tmp_path_factory.mktemp("mail")
    devmail = subprocess.Popen(
        [
            BIN / "zeropay",
            "devmail",
            "--host",
            "127.0.0.1",
            "--port",
            str(smtp_port),
            "--dir",
            str(mail_dir),
        ],
        stdout=subprocess.DEVNULL,
    )
    port = free_port()
    url = f"http://localhost:{port}"
    try:
        _wait_for_port(smtp_port)
        with scratch_database("zp_e2e_browser") as database_url:
            env = {
                **os.environ,
                "ZEROPAY_DATABASE_URL": database_url,
                "ZEROPAY_VAULT_DEV_FILE": str(tmp_path_factory.mktemp("keys") / "vault-dev.json"),
                "ZEROPAY_ARGON2_TIME_COST": "1",
                "ZEROPAY_ARGON2_MEMORY_KIB": "1024",
                "ZEROPAY_LOG_LEVEL": "warning",
                "ZEROPAY_RP_ID": "localhost",
                "ZEROPAY_RP_ORIGINS": url,
                "ZEROPAY_SMTP_HOST": "127.0.0.1",
                "ZEROPAY_SMTP_PORT": str(smtp_port),
                "ZEROPAY_DEV_MAIL_DIR": str(mail_dir),
                # The count rule: five small payments skip SCA, the sixth asks for it (a newly
                # bound browser may pay only EUR 10 at a time, so the amount cannot ask for it).
                "ZEROPAY_SCA_PROFILE": "psd2",
            }
            for unset in (
                "ZEROPAY_POLICY_PROFILE",
                "ZEROPAY_AUTH_POLICY",
                "ZEROPAY_JOBS",
                "PROMETHEUS_MULTIPROC_DIR",
            ):
                env.pop(unset, None)  # the shipped defaults, mail job included
            with zeropay_server(env, host="localhost", port=port, url=url):
                yield Server(url=url, env=env)
    finally:
        stop(devmail)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # The system's Chromium: Playwright never downloads a browser for this suite.
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield launched
        launched.close()


@dataclass
class Phone:
    """One browser profile: its pages, its IndexedDB (the device key) and cookies, and a
    virtual platform authenticator standing in for the fingerprint reader."""

    page: Page
    cdp: CDPSession
    authenticator_id: str
    csp_violations: list[str]

    def user_verifies(self, verified: bool) -> None:
        self.cdp.send(
            "WebAuthn.setUserVerified",
            {"authenticatorId": self.authenticator_id, "isUserVerified": verified},
        )

    def credentials(self) -> list[dict[str, Any]]:
        got = self.cdp.send("WebAuthn.getCredentials", {"authenticatorId": self.authenticator_id})
        return list(got["credentials"])


@pytest.fixture
def phone(browser: Browser) -> Iterator[Phone]:
    context = browser.new_context()
    context.set_default_timeout(UI_WAIT_MS)
    page = context.new_page()
    violations: list[str] = []
    page.on(
        "console",
        lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
    )
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    made = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    yield Phone(page, cdp, str(made["authenticatorId"]), violations)
    context.close()


def _sign_up(server: Server, phone: Phone, email: str = EMAIL) -> int:
    page = phone.page
    page.goto(f"{server.url}/signup")
    page.fill("#signup-email", email)
    page.fill("#signup-password", PASSWORD)
    page.click("#signup-form button[type=submit]")
    expect(page.locator("#signup-code-form")).to_be_visible()
    code, seen = server.mail_code(email, 0)
    page.fill("#signup-code", code)
    page.click("#signup-code-form button[type=submit]")
    expect(page.locator("#signup-done")).to_be_visible()
    return seen


def _bind(server: Server, phone: Phone, seen: int, email: str = EMAIL) -> None:
    page = phone.page
    page.click("#signup-bind")
    page.wait_for_url(f"{server.url}/bind")
    expect(page.locator("#bind-email")).to_have_value(email)  # read from the signed-in session
    page.click("#bind-form button[type=submit]")
    expect(page.locator("#bind-code-form")).to_be_visible()
    code, _ = server.mail_code(email, seen)
    page.fill("#bind-code", code)
    page.click("#bind-code-form button[type=submit]")  # the code, then the passkey is created
    page.wait_for_url(f"{server.url}/account")


def _sign_out(server: Server, phone: Phone) -> None:
    phone.page.click("#sign-out")
    phone.page.wait_for_url(f"{server.url}/login")
    phone.page.goto(f"{server.url}/account")
    expect(phone.page.locator("#signed-out")).to_be_visible()


def _try_passkey_login(server: Server, phone: Phone) -> None:
    phone.page.goto(f"{server.url}/login")
    phone.page.click("#passkey-login")


def test_sign_up_bind_and_log_in_with_a_passkey_and_without_user_verification_be_refused(
    server, phone
):
    page = phone.page
    seen = _sign_up(server, phone)
    _bind(server, phone, seen)
    expect(page.locator("#session-methods")).to_have_text("email_otp + passkey")
    expect(page.locator("#devices")).to_contain_text("(this device)")
    expect(page.locator("#notifications")).to_contain_text("new device")
    key = page.evaluate("""async () => {
        const { deviceKey } = await import("/static/zeropay.js");
        const { privateKey, jwk } = await deviceKey();
        return { extractable: privateKey.extractable, members: Object.keys(jwk).sort() };
    }""")
    # The DPoP key survived the page loads from /signup to /account in IndexedDB (the session
    # bound to it still answers) and can never be read out: only its public members leave it.
    assert key == {"extractable": False, "members": ["crv", "kty", "x", "y"]}
    made = phone.credentials()
    assert len(made) == 1 and made[0]["isResidentCredential"], made
    assert made[0]["rpId"] == "localhost"

    # Usernameless: no address typed; the resident credential names the account.
    _sign_out(server, phone)
    _try_passkey_login(server, phone)
    page.wait_for_url(f"{server.url}/account")
    expect(page.locator("#session-aal")).to_have_text("2")
    expect(page.locator("#session-methods")).to_have_text("passkey")
    expect(page.locator("#account-email")).to_have_text(EMAIL)
    # The risk engine's view, shown to the user: this session's trust, the bound phone's trust,
    # and its decisions with their reasons.
    expect(page.locator("#session-trust")).to_have_text(re.compile(r"^\d+ / 100$"))
    expect(page.locator("#devices")).to_contain_text(re.compile(r"trust \d+ / 100"))
    expect(page.locator("#risk-decisions")).to_contain_text("device registration: challenge")
    expect(page.locator("#risk-decisions")).to_contain_text("login: allow")
    assert phone.credentials()[0]["signCount"] >= 2  # one registration, one assertion

    # The fingerprint is not recognised: the authenticator does not verify the user.
    _sign_out(server, phone)
    phone.user_verifies(False)
    _try_passkey_login(server, phone)
    # Chromium answers NotAllowedError before anything reaches the server; were an assertion
    # sent without the UV flag, the server would refuse it (below).
    expect(page.locator("#error")).to_contain_text(re.compile("could not verify|not accepted"))
    assert page.url == f"{server.url}/login"
    page.goto(f"{server.url}/account")
    expect(page.locator("#signed-out")).to_be_visible()

    # The browser sends an assertion whose UV flag is clear anyway: the server refuses it.
    phone.user_verifies(True)
    phone.cdp.send(
        "WebAuthn.setResponseOverrideBits",
        {"authenticatorId": phone.authenticator_id, "isBadUV": True},
    )
    phone.page.goto(f"{server.url}/login")
    with page.expect_response(lambda r: r.url.endswith("/steps")) as answered:
        page.click("#passkey-login")
    assert answered.value.status == 401
    expect(page.locator("#error")).to_contain_text("not accepted")
    page.goto(f"{server.url}/account")
    expect(page.locator("#signed-out")).to_be_visible()

    assert phone.csp_violations == []  # the pages live within their own policy


def test_every_page_sends_a_strict_csp_and_refuses_to_be_framed(server, phone):
    for path in PAGES:
        r = httpx.get(server.url + path, timeout=5)
        assert r.status_code == 200, path
        assert r.headers["content-security-policy"] == STRICT_CSP, path
        assert r.headers["x-frame-options"] == "DENY", path
        assert r.headers["referrer-policy"] == "no-referrer", path
        assert "camera=()" in r.headers["permissions-policy"], path
        assert "<script>" not in r.text and " style=" not in r.text, path  # nothing inline
    api = httpx.get(f"{server.url}/v1/me", timeout=5)
    assert api.headers["content-security-policy"] == STRICT_CSP
    # Another page that frames the login page gets Chromium's error page in the frame.
    page = phone.page
    page.goto("about:blank")
    with page.expect_event(
        "framenavigated", predicate=lambda f: f.parent_frame is not None and f.url != "about:blank"
    ) as navigated:
        page.set_content(f'<iframe src="{server.url}/login"></iframe>')
    assert navigated.value.url.startswith("chrome-error://"), navigated.value.url


# ---- paying at the hosted checkout page ----------------------------------------------------------

PAYER = "bo@example.com"
API_FROM_PAGE = """async ([method, path, body]) => {
    const { api } = await import("/static/zeropay.js");
    return (await api(method, path, body ?? undefined)).data;
}"""


def _merchant(server: Server) -> str:
    made = subprocess.run(
        [BIN / "zeropay", "merchant", "create", "Corner Cafe"],
        env=server.env,
        check=True,
        capture_output=True,
        text=True,
    )
    return str(json.loads(made.stdout)["api_key"])


def _bill(server: Server, key: str, amount: int) -> tuple[str, str]:
    """A merchant's payment and the checkout link it shows the payer."""
    auth = {"Authorization": f"Bearer {key}"}
    r = httpx.post(
        f"{server.url}/v1/payments",
        headers=auth,
        json={"amount": amount, "currency": "EUR", "description": "Flat white"},
        timeout=5,
    )
    assert r.status_code == 201, r.text
    payment_id = r.json()["id"]
    r = httpx.get(f"{server.url}/v1/payments/{payment_id}/checkout-link", headers=auth, timeout=5)
    assert r.status_code == 200, r.text
    assert r.json()["qr_svg"].startswith("<svg")
    return payment_id, str(r.json()["url"])


def test_the_checkout_page_takes_a_small_payment_at_once_and_the_sixth_with_the_passkey(
    server, phone, browser
):
    page = phone.page
    seen = _sign_up(server, phone, PAYER)
    _bind(server, phone, seen, PAYER)
    topped = page.evaluate(
        API_FROM_PAGE, ["POST", "/v1/wallet/topups", {"amount": 10_000, "currency": "EUR"}]
    )
    assert topped["balance"]["available"] == 10_000
    key = _merchant(server)

    # A payer who is not signed in on this browser is sent to sign in, and back.
    first, link = _bill(server, key, 450)
    stranger = browser.new_context()
    other = stranger.new_page()
    other.goto(link)
    expect(other.locator("#pay-signed-out")).to_be_visible()
    assert other.locator("#pay-login").get_attribute("href") == (f"/login?next=%2Fpay%2F{first}")
    stranger.close()

    # What the payer is shown before paying; a small payment needs no confirmation.
    page.goto(link)
    expect(page.locator("#pay-amount")).to_have_text("€4.50")
    expect(page.locator("#pay-payee")).to_have_text("Corner Cafe")
    expect(page.locator("#pay-description")).to_have_text("Flat white")
    page.click("#pay")
    expect(page.locator("#paid-text")).to_have_text("Paid €4.50 to Corner Cafe.")
    expect(page.locator("#paid-how")).to_contain_text("a small payment")
    for _ in range(4):  # four more small ones: five since the last SCA
        paying, _ = _bill(server, key, 100)
        paid = page.evaluate(API_FROM_PAGE, ["POST", f"/v1/checkout/{paying}/confirm", None])
        assert paid["status"] == "succeeded" and paid["authentication"]["exemption"] == "low_value"

    # The sixth asks for the passkey, over exactly this amount and payee.
    sixth, link = _bill(server, key, 800)
    signs_before = phone.credentials()[0]["signCount"]
    page.goto(link)
    page.click("#pay")
    expect(page.locator("#confirm-card")).to_be_visible()
    expect(page.locator("#confirm-amount")).to_have_text("€8.00")
    expect(page.locator("#confirm-payee")).to_have_text("Corner Cafe")
    expect(page.locator("#confirm-why")).to_contain_text("several small payments")
    with page.expect_response(lambda r: r.url.endswith("/steps")) as answered:
        page.click("#confirm-passkey")
    assert answered.value.status == 200
    expect(page.locator("#paid-text")).to_have_text("Paid €8.00 to Corner Cafe.")
    expect(page.locator("#paid-how")).to_have_text("Confirmed with your passkey.")
    assert phone.credentials()[0]["signCount"] > signs_before
    r = httpx.get(
        f"{server.url}/v1/payments/{sixth}", headers={"Authorization": f"Bearer {key}"}, timeout=5
    )
    assert r.json()["status"] == "succeeded" and r.json()["amount_captured"] == 800
    sca = page.evaluate(API_FROM_PAGE, ["GET", "/v1/me/sca", None])
    assert sca["since_last_sca"]["exempt_payments"] == 0  # the passkey reset the count
    assert sca["decisions"][0]["outcome"] == "authenticated"
    # The account page says which payments skipped the prompt, which asked for it, and why.
    page.goto(f"{server.url}/account")
    decisions = page.locator("#sca-decisions")
    expect(decisions).to_contain_text("asked: you made several small payments")
    expect(decisions).to_contain_text("(authenticated)")
    expect(decisions).to_contain_text("skipped: a small payment")
    expect(page.locator("#sca-standing")).to_contain_text("5 more small payment(s)")
    assert phone.csp_violations == []


def test_the_account_page_switches_location_signals_off_and_on(server, phone):
    page = phone.page
    # an address of its own: the module's server keeps the accounts of the tests before it
    seen = _sign_up(server, phone, CONSENTING)
    _bind(server, phone, seen, CONSENTING)  # a strong sign-in a moment ago: withholding is allowed
    location = page.locator("#consent-location")
    expect(location).to_be_checked()
    expect(page.locator("#consent-behaviour")).to_be_checked()
    location.uncheck()
    page.click("#consents-form button[type=submit]")
    expect(page.locator("#status")).to_have_text("Choices saved.")
    expect(page.locator("#consent-location-changed")).to_contain_text("Changed")
    page.reload()
    expect(page.locator("#consent-location")).not_to_be_checked()
    expect(page.locator("#consent-behaviour")).to_be_checked()
    consents = page.evaluate("""async () => {
        const { api } = await import("/static/zeropay.js");
        return (await api("GET", "/v1/me/consents")).data.consents;
    }""")
    assert consents["location"]["given"] is False and consents["behaviour"]["given"] is True
    page.locator("#consent-location").check()
    page.click("#consents-form button[type=submit]")
    expect(page.locator("#status")).to_have_text("Choices saved.")
    page.reload()
    expect(page.locator("#consent-location")).to_be_checked()
    assert phone.csp_violations == []
