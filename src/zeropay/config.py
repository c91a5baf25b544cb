"""Settings, from environment variables (``ZEROPAY_*``), validated at start.

Nothing here is read at import time: ``Settings.from_env()`` is called by the composition root.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from zeropay.domain import bounds
from zeropay.domain.network import IPNetwork, parse_trusted_network


class ConfigError(ValueError):
    pass


def _optional_path(raw: str | None) -> Path | None:
    return Path(raw) if raw else None


def _peer_secret(raw: str | None) -> str | None:
    if not raw:
        return None
    if len(raw) < 32:
        raise ConfigError("ZEROPAY_VAULT_PEER_SECRET must be at least 32 characters")
    return raw


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///var/zeropay.db"
    # Set: a development vault, created on first start and auto-unsealed from this file (never
    # in production). Unset: the vault starts sealed until custodians unseal it.
    vault_dev_file: Path | None = None
    # Authenticates the processes that share an unseal through the database; the same value on
    # every server and on the custodians' CLI. Unset: each process is unsealed on its own.
    vault_peer_secret: str | None = field(default=None, repr=False)
    policy_profile: str = "default"
    month_zone: str = "Asia/Seoul"
    session_idle_s: int = 300
    session_absolute_s: int = 12 * 3600
    lockout_failures_max: int = 5
    lockout_base_s: int = 60
    lockout_locks_max: int = 5
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    hold_ttl_s: int = 7 * 24 * 3600
    body_bytes_max: int = bounds.BODY_BYTES_DEFAULT
    jobs_enabled: bool = True
    threads: int = 4
    smtp_host: str | None = None  # unset: email waits in the outbox
    smtp_port: int = 25
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    mail_sender: str = "ZeroPay <no-reply@zeropay.localhost>"
    dev_mail_dir: Path | None = None  # set: GET /dev/mail lists what the dev SMTP server kept
    log_level: str = "info"
    auth_policy_file: Path | None = None  # unset: the shipped zeropay/policies/default.toml
    rp_id: str = "localhost"  # WebAuthn relying party id
    rp_origins: tuple[str, ...] = ("http://localhost:8000",)
    # The origins clients address the API by; a DPoP proof's htu must name one of them (the
    # Host header is the client's to choose). Unset: the RP origins.
    public_origins: tuple[str, ...] = ()
    sms_gateway_url: str | None = None  # an HTTP SMS provider; unset: the dev sink below
    sms_gateway_token: str | None = field(default=None, repr=False)
    dev_sms_file: Path | None = None  # set: texts go to this file, shown at GET /dev/sms
    risk_enabled: bool = True  # the live risk engine scores logins, payments, registrations
    risk_config_file: Path | None = None  # unset: the shipped zeropay/policies/risk.toml
    # SCA exemptions (policies/exemptions-NAME.toml): "default" (low value by cumulative
    # amount), "psd2" (by count), or "off" (no exemption policy: only the risk engine asks for
    # SCA -- development and the payments-core tests).
    sca_profile: str = "default"
    # The proxies whose X-Forwarded-For is believed (domain.network). Unset: none, the peer is
    # the client.
    trusted_proxies: tuple[IPNetwork, ...] = ()
    # Development and tests only: webhooks may go over plain http and to this machine's own
    # addresses, which the SSRF rules refuse in production. Logged loudly at start.
    webhook_allow_local: bool = False
    # How long an erased user's email address is kept under the retention key: anti-money-
    # laundering record keeping asks for 5 years after the relationship ends (EU 2015/849
    # Art. 40); 1827 days is 5 years even when two of them are leap years.
    aml_retention_days: int = 1827

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        g = env.get
        profile = g("ZEROPAY_POLICY_PROFILE", "default")
        if profile not in {"core", "default"}:
            raise ConfigError(f"ZEROPAY_POLICY_PROFILE must be core or default, got {profile!r}")
        url = g("ZEROPAY_DATABASE_URL", cls.database_url)
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://") :]
        if not (url.startswith("sqlite") or url.startswith("postgresql+psycopg://")):
            raise ConfigError("ZEROPAY_DATABASE_URL must be a sqlite:/// or postgresql:// URL")
        return cls(
            database_url=url,
            vault_dev_file=_optional_path(g("ZEROPAY_VAULT_DEV_FILE")),
            vault_peer_secret=_peer_secret(g("ZEROPAY_VAULT_PEER_SECRET")),
            policy_profile=profile,
            month_zone=g("ZEROPAY_MONTH_ZONE", cls.month_zone),
            session_idle_s=_int(env, "ZEROPAY_SESSION_IDLE_S", cls.session_idle_s, 30, 86400),
            session_absolute_s=_int(
                env, "ZEROPAY_SESSION_ABSOLUTE_S", cls.session_absolute_s, 60, 7 * 86400
            ),
            lockout_failures_max=_int(env, "ZEROPAY_LOCKOUT_FAILURES_MAX", 5, 1, 100),
            lockout_base_s=_int(env, "ZEROPAY_LOCKOUT_BASE_S", 60, 1, 86400),
            lockout_locks_max=_int(env, "ZEROPAY_LOCKOUT_LOCKS_MAX", 5, 2, 100),
            argon2_time_cost=_int(env, "ZEROPAY_ARGON2_TIME_COST", 3, 1, 20),
            argon2_memory_kib=_int(env, "ZEROPAY_ARGON2_MEMORY_KIB", 65536, 8, 4 * 1024 * 1024),
            hold_ttl_s=_int(env, "ZEROPAY_HOLD_TTL_S", cls.hold_ttl_s, 60, 30 * 86400),
            body_bytes_max=_int(
                env, "ZEROPAY_BODY_BYTES_MAX", bounds.BODY_BYTES_DEFAULT, 1024, 10 * 1024 * 1024
            ),
            jobs_enabled=g("ZEROPAY_JOBS", "on") != "off",
            threads=_int(env, "ZEROPAY_THREADS", 4, 1, 200),
            smtp_host=g("ZEROPAY_SMTP_HOST") or None,
            smtp_port=_int(env, "ZEROPAY_SMTP_PORT", 25, 1, 65535),
            smtp_starttls=g("ZEROPAY_SMTP_STARTTLS", "off") == "on",
            smtp_username=g("ZEROPAY_SMTP_USERNAME") or None,
            smtp_password=g("ZEROPAY_SMTP_PASSWORD") or None,
            mail_sender=g("ZEROPAY_MAIL_SENDER", cls.mail_sender),
            dev_mail_dir=Path(d) if (d := g("ZEROPAY_DEV_MAIL_DIR")) else None,
            log_level=g("ZEROPAY_LOG_LEVEL", "info"),
            auth_policy_file=Path(p) if (p := g("ZEROPAY_AUTH_POLICY")) else None,
            rp_id=g("ZEROPAY_RP_ID", cls.rp_id),
            rp_origins=_origins(g("ZEROPAY_RP_ORIGINS"), "ZEROPAY_RP_ORIGINS") or cls.rp_origins,
            public_origins=_origins(g("ZEROPAY_PUBLIC_ORIGINS"), "ZEROPAY_PUBLIC_ORIGINS"),
            sms_gateway_url=g("ZEROPAY_SMS_GATEWAY_URL") or None,
            sms_gateway_token=g("ZEROPAY_SMS_GATEWAY_TOKEN") or None,
            dev_sms_file=Path(f) if (f := g("ZEROPAY_DEV_SMS_FILE")) else None,
            risk_enabled=_on_off(g("ZEROPAY_RISK"), "ZEROPAY_RISK"),
            risk_config_file=Path(r) if (r := g("ZEROPAY_RISK_CONFIG")) else None,
            sca_profile=_sca_profile(g("ZEROPAY_SCA_PROFILE")),
            trusted_proxies=_trusted_proxies(g("ZEROPAY_TRUSTED_PROXIES")),
            webhook_allow_local=_flag(
                g("ZEROPAY_WEBHOOK_ALLOW_LOCAL"), "ZEROPAY_WEBHOOK_ALLOW_LOCAL"
            ),
            aml_retention_days=_int(
                env, "ZEROPAY_AML_RETENTION_DAYS", cls.aml_retention_days, 1, 100 * 366
            ),
        )


def _sca_profile(raw: str | None) -> str:
    if not raw:
        return Settings.sca_profile
    if raw not in {"default", "psd2", "off"}:
        raise ConfigError(f"ZEROPAY_SCA_PROFILE must be default, psd2 or off, got {raw!r}")
    return raw


def _on_off(raw: str | None, name: str, *, default: bool = True) -> bool:
    if raw is None or raw == "":
        return default
    if raw not in {"on", "off"}:
        raise ConfigError(f"{name} must be on or off, got {raw!r}")
    return raw == "on"


def _origins(raw: str | None, name: str) -> tuple[str, ...]:
    """Comma-separated origins, each scheme://host[:port] with no path."""
    if not raw:
        return ()
    out = tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
    for origin in out:
        scheme, _, rest = origin.partition("://")
        if scheme not in {"http", "https"} or not rest or "/" in rest:
            raise ConfigError(f"{name}: {origin!r} is not an origin")
    return out


def _trusted_proxies(raw: str | None) -> tuple[IPNetwork, ...]:
    """Comma-separated addresses or CIDR networks of the proxies in front of the server."""
    name = "ZEROPAY_TRUSTED_PROXIES"
    entries = [e.strip() for e in (raw or "").split(",") if e.strip()]
    if len(entries) > bounds.TRUSTED_PROXIES_MAX:
        raise ConfigError(f"{name}: at most {bounds.TRUSTED_PROXIES_MAX} networks")
    out = []
    for entry in entries:
        try:
            out.append(parse_trusted_network(entry))
        except ValueError as exc:
            raise ConfigError(f"{name}: {entry!r} is refused: {exc}") from None
    return tuple(out)


def _flag(raw: str | None, name: str) -> bool:
    """An opt-in switch, off unless set to 1 (or on)."""
    if raw is None or raw in {"", "0", "off"}:
        return False
    if raw in {"1", "on"}:
        return True
    raise ConfigError(f"{name} must be 1 or 0, got {raw!r}")
