"""The wallet's pages: HTML and one JavaScript module served from files in the package, and the
security headers every response carries.

The pages hold no secret of their own. The browser keeps a non-extractable P-256 key in
IndexedDB and signs a DPoP proof (RFC 9449) for every API call; the session lives in
``__Host-`` cookies that script cannot read, and state-changing calls echo the CSRF token. A
strict Content-Security-Policy allows only scripts and styles from this origin (no inline code),
and no page may be framed: a confirmation cannot be clickjacked.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from string import Template

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from zeropay.domain.errors import NotFound

router = APIRouter(include_in_schema=False)

# Each page: its template and its title. A page's behaviour is picked by ``data-page`` in the
# one script, so no page carries code of its own (the CSP forbids inline scripts anyway).
PAGES = {
    "home": "ZeroPay",
    "signup": "Create your ZeroPay account",
    "login": "Sign in to ZeroPay",
    "bind": "Bind this device",
    "recover": "Recover your account",
    "account": "Your ZeroPay account",
    "pay": "Pay with ZeroPay",
    # The "this wasn't me" link of a recovery alert, and what its button leads to.
    "not-me": "Was this you?",
    "not-me-done": "Your account is frozen",
    "not-me-expired": "This link has expired",
    "not-me-used": "This link was already used",
    "not-me-invalid": "This link does not work",
    "not-me-sent": "A fresh link is on its way",
}
STATIC_TYPES = {
    "zeropay.js": "text/javascript; charset=utf-8",
    "zeropay.css": "text/css; charset=utf-8",
}

PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
# The offline Swagger UI starts itself with an inline script, which PAGE_CSP would block. It
# still may not be framed.
DOCS_CSP = "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect"})
PERMISSIONS_POLICY = (
    "camera=(), microphone=(), geolocation=(), payment=(), usb=(), "
    "publickey-credentials-get=(self), publickey-credentials-create=(self)"
)


def _web_file(folder: str, name: str) -> bytes:
    return resources.files("zeropay").joinpath("web", folder, name).read_bytes()


DEVELOPMENT_BANNER = (
    '<p class="banner" role="alert">Development vault: its keys sit in a local file. '
    "Never use this instance for real payments.</p>"
)


@cache
def _page(name: str, development: bool) -> bytes:
    """The page in its layout. Templates are ours and hold no request data, so a page is built
    once per process."""
    layout = Template(_web_file("templates", "layout.html").decode())
    main = _web_file("templates", f"{name}.html").decode()
    banner = DEVELOPMENT_BANNER if development else ""
    return layout.substitute(title=PAGES[name], page=name, main=main, banner=banner).encode()


@cache
def _static(name: str) -> bytes:
    return _web_file("static", name)


def html_page(name: str, request: Request, *, status_code: int = 200) -> HTMLResponse:
    # Every page says so when the vault unseals itself from a development file.
    development = request.app.state.container.settings.vault_dev_file is not None
    return HTMLResponse(_page(name, development), status_code=status_code)


@router.get("/")
def home(request: Request) -> HTMLResponse:
    return html_page("home", request)


@router.get("/signup")
def signup(request: Request) -> HTMLResponse:
    return html_page("signup", request)


@router.get("/login")
def login(request: Request) -> HTMLResponse:
    return html_page("login", request)


@router.get("/bind")
def bind(request: Request) -> HTMLResponse:
    return html_page("bind", request)


@router.get("/recover")
def recover(request: Request) -> HTMLResponse:
    return html_page("recover", request)


@router.get("/account")
def account(request: Request) -> HTMLResponse:
    return html_page("account", request)


@router.get("/pay/{payment_id}")
def pay(payment_id: str, request: Request) -> HTMLResponse:
    """The hosted checkout page of a payment: the page reads the id from its own address and
    asks the API for everything it shows, so the same bytes serve every payment."""
    return html_page("pay", request)


@router.get("/static/{name}")
def static(name: str) -> Response:
    media_type = STATIC_TYPES.get(name)
    if media_type is None:  # a fixed list: no path from the request ever reaches the disk
        raise NotFound("no such file")
    return Response(_static(name), media_type=media_type)


class SecurityHeaders:
    """Pure ASGI: the CSP, no framing, no referrer and a minimal Permissions-Policy on every
    response, pages and API alike (an API answer shown in a frame is clickjacking too)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = DOCS_CSP if scope["path"] in DOCS_PATHS else PAGE_CSP

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Content-Security-Policy"] = csp
                headers["X-Frame-Options"] = "DENY"
                headers["Referrer-Policy"] = "no-referrer"
                headers["Permissions-Policy"] = PERMISSIONS_POLICY
                headers["Cross-Origin-Opener-Policy"] = "same-origin"
            await send(message)

        await self.app(scope, receive, send_with_headers)
