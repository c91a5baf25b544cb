"""Account recovery in a real browser: headless Chromium drives the shipped pages against the real
server. A payer who lost their phone recovers the account from a new browser (a new device key)
with a recovery code and an emailed code, chooses a new password and lands on the account page,
cooling off; the browser they had before sees the recovery and freezes the account ("This wasn't
me").

The server runs as in ``test_browser_passkeys.py``: ``zeropay serve`` on ``localhost`` with the
shipped default policy, on a fresh PostgreSQL database, mail over SMTP to ``zeropay devmail`` read
back from ``GET /dev/mail``; Chromium gets a CDP virtual authenticator for the first browser's
passkey.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
from sqlalchemy import create_engine, text

from support.mfa import CODE, PASSWORD
from support.servers import BIN, free_port, scratch_database, stop, zeropay_server

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
EMAIL = "ana@example.com"
NEW_PASSWORD = "a new and rather long passphrase"
MAIL_WAIT_S = 20  # the server's job loop sends mail every 5 s
UI_WAIT_MS = 15_000
STRICT_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
API_FROM_PAGE = """async ([method, path]) => {
    const { api } = await import("/static/zeropay.js");
    return (await api(method, path)).data;
}"""


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
        """The code in the first message to ``email`` after the ``seen`` first ones (polled: the
        job loop sends mail every few seconds), and how many messages that makes seen."""
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

    def payer_status(self) -> str:
        """``users.status`` of the one account in this module's database (addresses are stored
        sealed, so the test does not look it up by address)."""
        engine = create_engine(
            self.env["ZEROPAY_DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1)
        )
        try:
            with engine.connect() as c:
                [(status,)] = list(c.execute(text("SELECT status FROM users")))
        finally:
            engine.dispose()
        return str(status)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    smtp_port = free_port()
    mail_dir = tmp_path_factory.mktemp("mail")
    devmail = subprocess.Popen(
        [BIN / "zeropay", "devmail", "--host", "127.0.0.1", "--port", str(smtp_port)]
        + ["--dir", str(mail_dir)],
        stdout=subprocess.DEVNULL,
    )
    port = free_port()
    url = f"http://localhost:{port}"
    try:
        _wait_for_port(smtp_port)
        with scratch_database("zp_e2e_recovery") as database_url:
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


def _browser_profile(browser: Browser, violations: list[str]) -> tuple[BrowserContext, Page]:
    """A fresh profile: its own IndexedDB (so its own device key), cookies and a virtual
    platform authenticator standing in for the fingerprint reader."""
    context = browser.new_context()
    context.set_default_timeout(UI_WAIT_MS)
    page = context.new_page()
    page.on(
        "console",
        lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
    )
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send(
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
    return context, page


def _sign_up_and_bind(server: Server, page: Page) -> int:
    """A payer with this browser bound (email code, then its passkey), on the account page; how
    many of their messages carried a code."""
    page.goto(f"{server.url}/signup")
    page.fill("#signup-email", EMAIL)
    page.fill("#signup-password", PASSWORD)
    page.click("#signup-form button[type=submit]")
    code, seen = server.mail_code(EMAIL, 0)
    page.fill("#signup-code", code)
    page.click("#signup-code-form button[type=submit]")
    page.click("#signup-bind")
    expect(page.locator("#bind-email")).to_have_value(EMAIL)  # read from the signed-in session
    page.click("#bind-form button[type=submit]")
    code, seen = server.mail_code(EMAIL, seen)
    page.fill("#bind-code", code)
    page.click("#bind-code-form button[type=submit]")
    page.wait_for_url(f"{server.url}/account")
    return seen


def test_a_new_browser_recovers_with_a_code_and_the_old_one_freezes_the_account(
    server: Server, browser: Browser
) -> None:
    violations: list[str] = []
    old_context, phone = _browser_profile(browser, violations)
    new_context, laptop = _browser_profile(browser, violations)
    try:
        seen = _sign_up_and_bind(server, phone)
        expect(phone.locator("#recoveries")).to_contain_text("No recoveries.")
        codes = phone.evaluate(API_FROM_PAGE, ["POST", "/v1/me/recovery-codes"])["codes"]

        # The phone is lost. A new browser (a new device key) starts from the login page.
        laptop.goto(f"{server.url}/login")
        laptop.click("text=Recover your account")
        laptop.wait_for_url(f"{server.url}/recover")
        laptop.fill("#recover-email", EMAIL)
        laptop.fill("#recover-name", "Old laptop")
        laptop.click("#recover-form button[type=submit]")
        choices = laptop.locator("#factor-choices")
        expect(choices.locator("[data-factor=recovery_code]")).to_be_visible()
        choices.locator("[data-factor=recovery_code]").click()
        laptop.fill("#recovery-code", codes[0])
        laptop.click("#recovery-code-form button[type=submit]")
        # One factor is never enough: the recovery code narrows the flow to the emailed code.
        expect(choices.locator("button")).to_have_count(1)
        choices.locator("[data-factor=email_otp]").click()
        expect(laptop.locator("#otp-form")).to_be_visible()
        code, seen = server.mail_code(EMAIL, seen)
        laptop.fill("#otp-code", code)
        laptop.click("#otp-form button[type=submit]")
        expect(laptop.locator("#recover-complete-form")).to_be_visible()
        laptop.fill("#recover-password", NEW_PASSWORD)
        laptop.click("#recover-complete-form button[type=submit]")
        laptop.wait_for_url(f"{server.url}/account")
        # Two possession factors: an AAL1 session on a new device, cooling off.
        expect(laptop.locator("#session-aal")).to_have_text("1")
        expect(laptop.locator("#session-device")).to_have_text("Old laptop")
        expect(laptop.locator("#cooling-off")).to_contain_text("Cooling off until")
        expect(laptop.locator("#recoveries")).to_contain_text("on a new device, cooling off")

        # The browser from before sees the recovery and says it was not them.
        phone.goto(f"{server.url}/account")
        recovery = phone.locator("#recoveries li").first
        expect(recovery).to_contain_text("Recovery completed")
        recovery.get_by_role("button", name="This wasn't me").click()
        expect(recovery).to_contain_text("Freeze your account?")
        assert server.payer_status() == "active"  # nothing happens before the second press
        recovery.get_by_role("button", name="Yes, freeze my account").click()
        expect(phone.locator("#frozen")).to_be_visible()
        expect(phone.locator("#signed-in")).to_be_hidden()
        expect(phone.locator("#frozen a")).to_have_attribute("href", "/")
        assert server.payer_status() == "frozen"
        # Every session ended, the recovered one too.
        laptop.reload()
        expect(laptop.locator("#signed-out")).to_be_visible()
    finally:
        new_context.close()
        old_context.close()
    assert violations == []  # the pages live within their own policy


def test_the_recover_page_sends_a_strict_csp_and_is_linked_from_the_login_page(
    server: Server,
) -> None:
    r = httpx.get(f"{server.url}/recover", timeout=5)
    assert r.status_code == 200
    assert r.headers["content-security-policy"] == STRICT_CSP
    assert r.headers["x-frame-options"] == "DENY"
    assert "<script>" not in r.text and " style=" not in r.text  # nothing inline
    assert re.search(r'href="/recover"', httpx.get(f"{server.url}/login", timeout=5).text)
