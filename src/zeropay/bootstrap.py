"""The composition root: the one place where adapters are chosen and wired."""

from __future__ import annotations

import logging
import secrets
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from zeropay.adapters.clock import SystemClock
from zeropay.adapters.funding import Detokenizer, SandboxGateway
from zeropay.adapters.geoip import CountryGeoIP
from zeropay.adapters.mail import SmtpMailer
from zeropay.adapters.passwords import Argon2PasswordHasher, shipped_common_passwords
from zeropay.adapters.sms import DevSmsSink, HttpSmsGateway
from zeropay.adapters.sql.database import make_engine
from zeropay.adapters.sql.uow import reader, transactor
from zeropay.adapters.vault.store import SqlVaultStore, vault_engine
from zeropay.adapters.vault.vault import Vault
from zeropay.adapters.webhook_http import HttpWebhookSender, SystemResolver
from zeropay.config import Settings
from zeropay.domain.errors import ConfigurationError
from zeropay.domain.exemptions import Profile, parse_profile
from zeropay.domain.limits import SpendingLimits, builtin_profile
from zeropay.domain.lockout import LockoutPolicy
from zeropay.domain.policy import AuthPolicy, parse_policy
from zeropay.domain.risk.config import RiskConfig, parse_risk_config
from zeropay.domain.sessions import SessionPolicy
from zeropay.services import vault as vault_service
from zeropay.services.context import AppContext, Durations, RelyingParty, RiskSetup, WebhookSetup
from zeropay.services.ports import (
    Clock,
    FundingGateway,
    KeyRing,
    Mailer,
    PasswordHasher,
    Resolver,
    SmsSender,
    WebhookSender,
)

log = logging.getLogger("zeropay")


def load_auth_policy(settings: Settings) -> AuthPolicy:
    """The policy file named by ZEROPAY_AUTH_POLICY, else the shipped default; a mistake in it
    stops the start with a ``ConfigurationError`` naming the key."""
    if settings.auth_policy_file is None:
        text = resources.files("zeropay").joinpath("policies/default.toml").read_text("utf-8")
        return parse_policy(tomllib.loads(text))
    return read_policy_file(settings.auth_policy_file)


def read_policy_file(path: Path) -> AuthPolicy:
    """Read and validate a policy file: unreadable, not TOML or not a valid policy all raise
    ``ConfigurationError`` naming the file."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"authentication policy {path}: cannot read it: {exc}") from exc
    return parse_policy(document)


EXEMPTION_PROFILES = ("default", "psd2")


def load_exemption_profile(name: str) -> Profile:
    """A shipped SCA exemption profile (``policies/exemptions-NAME.toml``)."""
    if name not in EXEMPTION_PROFILES:
        raise ConfigurationError(
            f"exemption profile must be one of {', '.join(EXEMPTION_PROFILES)}"
        )
    text = (
        resources.files("zeropay").joinpath(f"policies/exemptions-{name}.toml").read_text("utf-8")
    )
    return parse_profile(name, tomllib.loads(text))


def exemption_profile(settings: Settings) -> Profile | None:
    if settings.sca_profile == "off":
        log.warning(
            "ZEROPAY_SCA_PROFILE=off: no SCA exemption policy; payments skip SCA unless the "
            "risk engine asks for it. For development only."
        )
        return None
    return load_exemption_profile(settings.sca_profile)


def load_risk_config(path: Path | None = None) -> RiskConfig:
    """The risk rules in ``path``, else the shipped ``policies/risk.toml``; a mistake stops the
    start with a ``ConfigurationError`` naming the key."""
    if path is None:
        text = resources.files("zeropay").joinpath("policies/risk.toml").read_text("utf-8")
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"risk config {path}: cannot read it: {exc}") from exc
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"risk config {path or 'shipped'}: not TOML: {exc}") from exc
    return parse_risk_config(document)


@cache
def _geoip() -> CountryGeoIP:
    return CountryGeoIP()  # a tenth of a second to load: once per process


def risk_setup(settings: Settings) -> RiskSetup | None:
    """The live risk engine: its rules (ZEROPAY_RISK_CONFIG or the shipped file) and GeoIP from
    the database shipped with ``geoip2fast``; None when ZEROPAY_RISK=off."""
    if not settings.risk_enabled:
        return None
    return RiskSetup(config=load_risk_config(settings.risk_config_file), locate=_geoip())


def sms_sender(settings: Settings) -> SmsSender | None:
    if settings.sms_gateway_url:
        return HttpSmsGateway(settings.sms_gateway_url, token=settings.sms_gateway_token)
    if settings.dev_sms_file is not None:
        return DevSmsSink(settings.dev_sms_file)
    return None


def webhook_setup(
    settings: Settings, *, sender: WebhookSender | None, resolver: Resolver | None
) -> WebhookSetup:
    """The webhook sender and resolver; the development escape hatch, announced loudly."""
    if settings.webhook_allow_local:
        logging.getLogger("zeropay.webhooks").warning(
            "ZEROPAY_WEBHOOK_ALLOW_LOCAL is on: webhooks may be sent over plain http and to "
            "this machine's own addresses (loopback), which production refuses as SSRF. For "
            "development and tests only."
        )
    return WebhookSetup(
        sender=sender if sender is not None else HttpWebhookSender(),
        resolver=resolver if resolver is not None else SystemResolver(),
        allow_local=settings.webhook_allow_local,
    )


@dataclass(frozen=True)
class Container:
    settings: Settings
    engine: Engine
    ctx: AppContext
    vault: Vault | None = None  # None when a test hands in its own key ring
    # Payment instruments are charged here; it alone holds the detokenizer (adapters.funding).
    funding: FundingGateway | None = None


def build_vault(settings: Settings, engine: Engine) -> Vault:
    """The vault over the database; a development vault unseals itself from its file."""
    vault = Vault(
        SqlVaultStore(vault_engine(engine)),
        clock=SystemClock(),
        peer_secret=settings.vault_peer_secret.encode() if settings.vault_peer_secret else None,
    )
    if settings.vault_dev_file is not None:
        try:
            vault.auto_unseal(settings.vault_dev_file)
        except DBAPIError as exc:
            raise ConfigurationError(
                "the database has no vault tables yet: run `zeropay migrate` first"
            ) from exc
    return vault


def build(
    settings: Settings,
    *,
    clock: Clock | None = None,
    keyring: KeyRing | None = None,
    hasher: PasswordHasher | None = None,
    engine: Engine | None = None,
    mailer: Mailer | None = None,
    sms: SmsSender | None = None,
    webhook_sender: WebhookSender | None = None,
    resolver: Resolver | None = None,
    funding: FundingGateway | None = None,
) -> Container:
    engine = engine or make_engine(settings.database_url, pool_size=settings.threads + 2)
    auth_policy = load_auth_policy(settings)  # a broken policy fails before the database is used
    vault = None
    if keyring is None:
        vault = build_vault(settings, engine)
        keyring = vault
    ctx = AppContext(
        clock=clock or SystemClock(),
        keyring=keyring,
        hasher=hasher
        or Argon2PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost_kib=settings.argon2_memory_kib,
            parallelism=1,
        ),
        random_bytes=secrets.token_bytes,
        transact=transactor(engine),
        read_only=reader(engine),
        profile=builtin_profile(
            settings.policy_profile, limits=SpendingLimits(month_zone=settings.month_zone)
        ),
        lockout=LockoutPolicy(
            failures_max=settings.lockout_failures_max,
            lock_base_s=settings.lockout_base_s,
            locks_max=settings.lockout_locks_max,
        ),
        session_policy=SessionPolicy(
            idle_timeout_s=settings.session_idle_s,
            absolute_timeout_s=settings.session_absolute_s,
        ),
        durations=Durations(
            hold_ttl_s=settings.hold_ttl_s, aml_retention_days=settings.aml_retention_days
        ),
        common_passwords=shipped_common_passwords(),
        mailer=mailer
        if mailer is not None
        else (
            SmtpMailer(
                host=settings.smtp_host,
                port=settings.smtp_port,
                sender=settings.mail_sender,
                starttls=settings.smtp_starttls,
                username=settings.smtp_username,
                password=settings.smtp_password,
            )
            if settings.smtp_host
            else None
        ),
        auth_policy=auth_policy,
        relying_party=RelyingParty(rp_id=settings.rp_id, origins=settings.rp_origins),
        sms=sms if sms is not None else sms_sender(settings),
        public_origins=settings.public_origins or settings.rp_origins,
        risk=risk_setup(settings),
        webhooks=webhook_setup(settings, sender=webhook_sender, resolver=resolver),
        exemptions=exemption_profile(settings),
    )
    if funding is None and vault is not None:
        # The vault's revealer goes to the detokenizer, the detokenizer to the gateway, and
        # neither anywhere else: no use case can read a number. A test that hands in its own key
        # ring hands in its own gateway, or charges answer 503 (no funding gateway).
        funding = SandboxGateway(Detokenizer(vault.revealer(), actor="funding:sandbox"))
    if vault is not None:
        vault.on_unsealed = lambda event: vault_service.record_unsealed(
            ctx, by=event.by, shares=event.shares
        )
    return Container(settings=settings, engine=engine, ctx=ctx, vault=vault, funding=funding)


def asgi_app() -> object:
    """The ASGI application for ``uvicorn --factory``: settings from the environment."""
    from zeropay.api.app import create_app

    return create_app(build(Settings.from_env()))
