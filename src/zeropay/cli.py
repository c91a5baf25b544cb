"""The ``zeropay`` command."""

from __future__ import annotations

import argparse
import atexit
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from zeropay.config import ConfigError, Settings

if TYPE_CHECKING:
    from zeropay.adapters.vault.vault import Vault
    from zeropay.bootstrap import Container
    from zeropay.domain.policy import AuthPolicy
    from zeropay.services.fraud import FraudStatus


def _container(settings: Settings | None = None, *, needs_keys: bool = True) -> Container:
    """The wired application. ``needs_keys``: wait for an unsealed server to send this process
    the vault's key (a development vault has unsealed itself already); only the vault's own
    commands and those that read no secret go without."""
    from zeropay.bootstrap import build
    from zeropay.domain.errors import VaultSealed

    built = build(settings or Settings.from_env())
    if built.vault is not None:
        # This process may have announced itself to the servers (and been sent the key): it
        # leaves the list of processes when it exits.
        atexit.register(built.vault.stop)
    if needs_keys and built.vault is not None and built.vault.sealed:
        if built.settings.vault_peer_secret is None:
            raise VaultSealed(
                "this command needs the vault's keys: set ZEROPAY_VAULT_PEER_SECRET (as on the "
                "servers) so an unsealed server can send them"
            )
        print("waiting for an unsealed server to send the vault key...", file=sys.stderr)
        if not built.vault.wait_unsealed(VAULT_WAIT_S):
            raise VaultSealed(
                f"no unsealed server sent the vault key within {VAULT_WAIT_S} s: unseal the "
                "servers first (zeropay vault unseal)"
            )
    return built


VAULT_WAIT_S = 30


def cmd_migrate(_args: argparse.Namespace) -> int:
    from zeropay.adapters.sql.database import make_engine
    from zeropay.adapters.sql.migrate import current_revision, migrate

    settings = Settings.from_env()
    engine = make_engine(settings.database_url)
    migrate(engine)
    print(f"database at revision {current_revision(engine)}")
    return 0


def cmd_risk_replay(args: argparse.Namespace) -> int:
    """Decide every event of a JSON-lines file with the live engine, in an isolated state."""
    from pathlib import Path

    from zeropay.bootstrap import load_risk_config
    from zeropay.services.risk_replay import Replayer, encode

    config = load_risk_config(Path(args.config) if args.config else None)
    locate = None
    if not args.no_geoip:
        from zeropay.adapters.geoip import CountryGeoIP

        locate = CountryGeoIP()
    replayer = Replayer(config, locate=locate)
    bad = 0
    try:
        source = sys.stdin.buffer if args.events == "-" else open(args.events, "rb")  # noqa: SIM115
    except OSError as exc:
        print(f"risk replay: cannot read {args.events}: {exc.strerror}", file=sys.stderr)
        return 2
    with source, open(args.output, "wb") as out:
        for result in replayer.run(source):
            if result.decision is not None:
                out.write(encode(result.decision))
            else:
                bad += 1
                print(f"line {result.line}: {result.error}", file=sys.stderr)
    return 2 if bad else 0


def cmd_risk_simulate(args: argparse.Namespace) -> int:
    """Write labelled synthetic events: honest lives and each attack, for replay and scoring."""
    import orjson

    from zeropay.services.risk_simulation import generate

    events = generate(args.seed, users=args.users, days=args.days)
    with open(args.output, "wb") as out:
        for event in events:
            out.write(orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE))
    print(f"{len(events)} events for {args.users} users over {args.days} days (seed {args.seed})")
    return 0


def cmd_risk_score(args: argparse.Namespace) -> int:
    """Compare decisions with the labels of simulated events: attacks stopped, honest friction."""
    import orjson

    from zeropay.services.risk_scoring import score, targets_met

    try:
        with open(args.events, "rb") as e, open(args.decisions, "rb") as d:
            report = score(map(orjson.loads, e), map(orjson.loads, d))
    except OSError as exc:
        print(f"risk score: cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    except (ValueError, orjson.JSONDecodeError) as exc:
        print(f"risk score: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report.as_dict(), indent=2) if args.json else report.table())
    return 0 if all(targets_met(report).values()) else 1


def cmd_serve(args: argparse.Namespace) -> int:
    from zeropay.serve import serve

    if args.workers > 1:
        # Each worker keeps its own metrics; Prometheus' multiprocess mode merges them.
        directory = os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", "var/prometheus")
        os.makedirs(directory, exist_ok=True)
        for name in os.listdir(directory):
            os.unlink(os.path.join(directory, name))
    Settings.from_env()  # fail fast, in the supervisor, on a bad setting
    serve(host=args.host, port=args.port, workers=args.workers)
    return 0


def cmd_policy_check(args: argparse.Namespace) -> int:
    """Validate an authentication policy file and print what each access point asks."""
    from pathlib import Path

    from zeropay.bootstrap import read_policy_file
    from zeropay.domain.errors import ConfigurationError
    from zeropay.domain.policy import class_table

    try:
        policy = read_policy_file(Path(args.file))
    except ConfigurationError as exc:
        print(exc.message, file=sys.stderr)
        return 2
    print(f"policy {policy.version}: valid")
    for point, rule in policy.points.items():
        paths = " | ".join(" + ".join(f.value for f in path) for path in rule.paths)
        print(f"  {point.value:22} {paths}")
    print("by device class:")
    for point, by_class in class_table(policy).items():
        for device_class, opened in by_class.items():
            paths = " | ".join(" + ".join(f.value for f in path) for path in opened) or "(none)"
            print(f"  {point.value:22} {device_class.value:10} {paths}")
    return 0


def fallback_table(policy: AuthPolicy) -> str:
    """README.md's table of what each device class may use at each access point under
    ``policy`` (Markdown): one row per point and class, its paths one per line, a factor that
    is waived when the user has none to present in parentheses."""
    from zeropay.domain.policy import class_table

    lines = [
        "| access point | device class | factor combinations |",
        "|---|---|---|",
    ]
    for point, by_class in class_table(policy).items():
        waived = policy.point(point).waived_when_unavailable
        for device_class, opened in by_class.items():
            cells = [
                "`" + " + ".join(f"({f})" if f in waived else f.value for f in path) + "`"
                for path in opened
            ]
            lines.append(
                f"| {point.value} | {device_class.value} | {'<br>'.join(cells) or 'none'} |"
            )
    return "\n".join(lines) + "\n"


def cmd_policy_table(args: argparse.Namespace) -> int:
    """Print README.md's fallback table for a policy file (the shipped one by default)."""
    from pathlib import Path

    from zeropay.bootstrap import read_policy_file
    from zeropay.domain.errors import ConfigurationError

    path = Path(args.file) if args.file else Path(__file__).parent / "policies" / "default.toml"
    try:
        policy = read_policy_file(path)
    except ConfigurationError as exc:
        print(exc.message, file=sys.stderr)
        return 2
    print(fallback_table(policy), end="")
    return 0


def cmd_dpop(args: argparse.Namespace) -> int:
    """Print a DPoP proof (RFC 9449) for one request, made with a device key kept in a file: a
    development aid for trying the API with curl, never a way to store a real device's key."""
    import base64
    import hashlib
    import secrets
    import time
    from pathlib import Path

    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    path = Path(args.key)
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            print(f"{path} does not hold an EC key", file=sys.stderr)
            return 2
    else:
        key = ec.generate_private_key(ec.SECP256R1())
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.write_bytes(pem)
        path.chmod(0o600)

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    numbers = key.public_key().public_numbers()
    jwk = {
        "kty": "EC",
        "crv": "P-256",
        "x": b64(numbers.x.to_bytes(32, "big")),
        "y": b64(numbers.y.to_bytes(32, "big")),
    }
    claims: dict[str, object] = {
        "jti": secrets.token_urlsafe(16),
        "htm": args.method.upper(),
        "htu": args.url.split("?", 1)[0].split("#", 1)[0],
        "iat": int(time.time()),
    }
    if args.token:
        claims["ath"] = b64(hashlib.sha256(args.token.encode()).digest())
    print(jwt.encode(claims, key, algorithm="ES256", headers={"typ": "dpop+jwt", "jwk": jwk}))
    return 0


def cmd_demo(_args: argparse.Namespace) -> int:
    from zeropay.services.demo import seed

    container = _container(needs_keys=True)
    print(seed(container.ctx))
    return 0


def cmd_ledger_verify(_args: argparse.Namespace) -> int:
    from zeropay.services import ledger_check

    accounts, transfers, violations = ledger_check.verify(_container(needs_keys=False).ctx)
    for v in violations:
        print(f"VIOLATION {v.rule} {v.subject}: {v.message}")
    status = "FAILED" if violations else "ok"
    print(
        f"ledger {status}: {accounts} accounts, {transfers} transfers, {len(violations)} violations"
    )
    return 1 if violations else 0


def cmd_ledger_reverse(args: argparse.Namespace) -> int:
    from zeropay.services import ledger_check

    reversal = ledger_check.reverse(
        _container().ctx,
        transfer_id=args.transfer_id,
        reason=args.reason,
        actor=f"cli:{os.environ.get('USER', 'operator')}",
    )
    print(f"reversed {args.transfer_id} with {reversal.id} ({reversal.amount})")
    return 0


def cmd_audit_verify(_args: argparse.Namespace) -> int:
    from zeropay.services import audit

    report = audit.verify(_container(needs_keys=False).ctx)
    for b in report.breaks:
        print(f"BREAK {b.kind} at seq {b.seq}: {b.message}")
    print(
        f"audit log {'FAILED' if report.breaks else 'ok'}: {report.entries} entries, "
        f"{len(report.breaks)} breaks"
    )
    return 1 if report.breaks else 0


def cmd_merchant_create(args: argparse.Namespace) -> int:
    from zeropay.services import merchants

    merchant_id, key = merchants.create_merchant(_container().ctx, name=args.name, mcc=args.mcc)
    print(
        json.dumps(
            {"merchant_id": merchant_id, "api_key": key.secret, "scopes": sorted(key.scopes)},
            indent=2,
        )
    )
    print("Store the API key now: it is shown once and stored only as a hash.", file=sys.stderr)
    return 0


def cmd_key_create(args: argparse.Namespace) -> int:
    from zeropay.services import merchants

    scopes = frozenset(s.strip() for s in args.scopes.split(",") if s.strip())
    key = merchants.create_api_key(
        _container().ctx,
        merchant_id=args.merchant_id,
        scopes=scopes,
        label=args.label,
        actor="cli",
    )
    print(
        json.dumps(
            {"key_id": key.key_id, "api_key": key.secret, "scopes": sorted(key.scopes)}, indent=2
        )
    )
    return 0


def cmd_key_revoke(args: argparse.Namespace) -> int:
    from zeropay.services import merchants

    merchants.revoke_api_key(
        _container().ctx, merchant_id=args.merchant_id, key_id=args.key_id, actor="cli"
    )
    print(f"revoked {args.key_id}")
    return 0


def cmd_operator_grant(args: argparse.Namespace) -> int:
    from zeropay.services import operators

    change = operators.grant(_container().ctx, email=args.email, role=args.role, actor="cli")
    done = "granted" if change.changed else "already held"
    print(f"{change.user_id}: role {change.role} {done}")
    return 0


def cmd_operator_revoke(args: argparse.Namespace) -> int:
    from zeropay.services import operators

    change = operators.revoke(_container().ctx, email=args.email, role=args.role, actor="cli")
    done = "revoked" if change.changed else "was not held"
    print(f"{change.user_id}: role {change.role} {done}")
    return 0


def cmd_operator_list(_args: argparse.Namespace) -> int:
    from zeropay.services import operators

    for listed in operators.list_grants(_container().ctx):
        g = listed.grant
        granted_at = g.granted_at.isoformat().replace("+00:00", "Z")
        print(f"{g.user_id}  {listed.email}  {g.role}  {granted_at}  by {g.granted_by}")
    return 0


def cmd_user_erase(args: argparse.Namespace) -> int:
    """Erase a user by crypto-shredding (GDPR Art. 17); the email address stays under the
    retention key for the AML period. Running it again finishes an interrupted erasure."""
    from zeropay.services import erasure

    done = erasure.erase_user(
        _container().ctx, args.user_id, by=f"cli:{os.environ.get('USER', 'operator')}"
    )
    print(
        json.dumps(
            {
                "user_id": done.user_id,
                "erased_at": done.erased_at.isoformat(),
                "erased_now": done.erased_now,
                "email_retained_until": done.retained_until.isoformat(),
                "personal_key_versions_destroyed": done.key_versions_destroyed,
            },
            indent=2,
        )
    )
    return 0


def cmd_user_unfreeze(args: argparse.Namespace) -> int:
    """Unfreeze an account frozen by "this wasn't me", once support has checked who the owner
    is. Takes the email address or the user id; the owner then recovers the account."""
    from zeropay.services import recovery
    from zeropay.services.accounts import email_index, parse_email

    ctx = _container().ctx
    user_id = args.user
    if not user_id.startswith("usr_"):
        index = email_index(ctx, parse_email(user_id))
        found = ctx.read(lambda uow: uow.accounts.user_by_email_index(index))
        if found is None:
            print("no account has this email address", file=sys.stderr)
            return 1
        user_id = found.id
    moved = recovery.unfreeze(
        ctx, user_id=user_id, actor=f"cli:{os.environ.get('USER', 'operator')}", reason=args.reason
    )
    print(json.dumps({"user_id": user_id, "unfrozen": moved}))
    return 0 if moved else 1


def cmd_fraud_report(args: argparse.Namespace) -> int:
    from zeropay.api.fraud_routes import report_json
    from zeropay.services import fraud

    made = fraud.report_from_cli(
        _container().ctx,
        payment_id=args.payment_id,
        kind=args.kind,
        amount_minor=args.amount,
        reason=args.reason,
        actor=f"cli:{os.environ.get('USER', 'operator')}",
    )
    print(json.dumps(report_json(made, operator_view=True), indent=2))
    return 0


def cmd_fraud_status(args: argparse.Namespace) -> int:
    from zeropay.api.fraud_routes import status_json
    from zeropay.bootstrap import load_exemption_profile
    from zeropay.services import fraud

    profile = load_exemption_profile(args.profile) if args.profile else None
    status = fraud.status(_container(needs_keys=False).ctx, profile)
    if args.json:
        print(json.dumps(status_json(status), indent=2))
    else:
        print(_fraud_text(status))
    return 0


def _fraud_text(s: FraudStatus) -> str:
    from fractions import Fraction

    from zeropay.domain.fraud import FraudRate, quarter_name
    from zeropay.domain.money import Money, currency

    unit = currency(s.profile.tra_currency)

    def money(minor: Fraction) -> str:
        return str(Money(round(minor), unit))

    def rate(r: FraudRate) -> str:
        value = r.as_float()
        return "fraud with no volume" if value == float("inf") else f"{value * 100:.4f} %"

    lines = [f"profile {s.profile.name}: fraud rate by value, in {unit.code}"]
    if s.window is None:
        lines.append("  no day closed yet: run `zeropay jobs run`; TRA is off")
    else:
        first, last = (d.date().isoformat() for d in s.window)
        lines.append(f"  90 closed days {first} to {last}: {rate(s.rate)}")
        lines.append(
            f"  {money(s.rate.fraud_minor)} fraud of {money(s.rate.captured_minor)} captured"
        )
        if not s.fresh:
            lines.append("  stale (the closing job is behind): the rate is unknown, TRA is off")
    if s.rate.unpriced:
        lines.append(f"  left out, no rate in the profile: {', '.join(s.rate.unpriced)}")
    if s.quarter_reference is not None:
        lines.append(f"closed quarters, held to {s.quarter_reference * 100:.4f} %:")
        for q in s.quarters:
            verdict = "above" if q.above else "under"
            lines.append(f"  {quarter_name(q.period.starts_at)}  {rate(q.rate)}  {verdict}")
        lines.append(f"  above in a row: {s.quarters_above} (two switch TRA off, Art. 20)")
    lines.append("transaction risk analysis:")
    for band, on in s.bands:
        ceiling = Money(band.ceiling_minor, unit)
        lines.append(
            f"  up to {ceiling} (reference {band.reference_rate * 100:.4f} %): "
            f"{'on' if on else 'off'}"
        )
    if not s.bands:
        lines.append("  not in this profile")
    return "\n".join(lines)


def cmd_devmail(args: argparse.Namespace) -> int:
    from pathlib import Path

    from zeropay.adapters.mail import run_dev_mail_server

    run_dev_mail_server(host=args.host, port=args.port, directory=Path(args.dir))
    return 0


def cmd_jobs_run(_args: argparse.Namespace) -> int:
    from zeropay.services import jobs

    ctx = _container(needs_keys=True).ctx
    jobs.register(ctx)
    print(json.dumps(jobs.run_due(ctx, owner=f"cli-{os.getpid()}")))
    return 0


def cmd_webhooks_deliver(args: argparse.Namespace) -> int:
    """Fan new events out to endpoints and make the attempts that are due: once, or every few
    seconds until stopped (a dedicated worker beside the servers' own jobs)."""
    import time

    from zeropay.services import webhooks

    ctx = _container(needs_keys=True).ctx
    owner = f"cli-{os.getpid()}"
    while True:
        done = webhooks.run_once(ctx, owner=owner)
        if args.once:
            print(json.dumps(done))
            return 0
        if any(done.values()):
            print(json.dumps(done), flush=True)
        time.sleep(args.interval)


def _vault(container: Container) -> Vault:
    if container.vault is None:
        raise RuntimeError("this process was built without a vault")
    return container.vault


def cmd_vault_init(args: argparse.Namespace) -> int:
    """Create the root key, split it, and hand each share out once."""
    from pathlib import Path

    from zeropay.adapters.vault import crypto

    try:
        keys = [crypto.load_public_key(Path(k).read_bytes()) for k in args.custodian_key or []]
    except (OSError, ValueError) as exc:
        print(f"error: a custodian key: {exc}", file=sys.stderr)
        return 2
    if keys and len(keys) != args.shares:
        print(f"give one --custodian-key per share ({args.shares})", file=sys.stderr)
        return 2
    if keys and not args.out_dir:
        print("--custodian-key needs --out-dir (the encrypted shares are files)", file=sys.stderr)
        return 2
    vault = _vault(_container(needs_keys=False))
    try:
        pieces = vault.initialize(shares=args.shares, threshold=args.threshold)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"vault {pieces[0].vault_id}: {args.shares} shares, any {args.threshold} unseal it. "
        "The root key is not stored anywhere; these shares are shown once.",
        file=sys.stderr,
    )
    if not args.out_dir:
        for piece in pieces:
            print(piece.text())
        return 0
    out = Path(args.out_dir)
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    for i, piece in enumerate(pieces):
        name = out / f"share-{piece.index}.{'sealed.json' if keys else 'txt'}"
        if keys:
            payload = encrypt_share(piece.text(), keys[i], vault_id=piece.vault_id)
        else:
            payload = piece.text() + "\n"
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(payload)
        print(f"wrote {name}", file=sys.stderr)
    return 0


def encrypt_share(text: str, public_key: bytes, *, vault_id: str) -> str:
    """A share sealed to a custodian's X25519 public key, as a small JSON document."""
    import base64

    from zeropay.adapters.vault import crypto

    sealed = crypto.seal_box(public_key, text.encode(), context=_custodian_context(vault_id))
    return json.dumps(
        {
            "zeropay_sealed_share": 1,
            "vault_id": vault_id,
            "recipient": base64.b64encode(public_key).decode(),
            "sealed": base64.b64encode(sealed).decode(),
        }
    )


def decrypt_share(document: str, private_pem: bytes) -> str:
    import base64

    from zeropay.adapters.vault import crypto

    data = json.loads(document)
    key = crypto.load_private_key(private_pem)
    sealed = base64.b64decode(data["sealed"])
    return crypto.open_box(key, sealed, context=_custodian_context(data["vault_id"])).decode()


def _custodian_context(vault_id: str) -> bytes:
    return b"zeropay/vault/custodian-share/v1|" + vault_id.encode()


def _read_share(args: argparse.Namespace) -> str:
    from pathlib import Path

    if args.share_file:
        text = Path(args.share_file).read_text()
    elif sys.stdin.isatty():
        import getpass

        text = getpass.getpass("share (not echoed): ")
    else:
        text = sys.stdin.readline()
    if args.private_key:
        return decrypt_share(text, Path(args.private_key).read_bytes())
    return text


def cmd_vault_unseal(args: argparse.Namespace) -> int:
    """Send one share to a server's unseal API with the custodian's credential. A custodian
    needs neither database access nor the servers' peer secret."""
    import httpx

    token = os.environ.get("ZEROPAY_CUSTODIAN_TOKEN", "")
    if args.token_file:
        from pathlib import Path

        token = Path(args.token_file).read_text().strip()
    if not token:
        print(
            "give the custodian credential: --token-file or ZEROPAY_CUSTODIAN_TOKEN",
            file=sys.stderr,
        )
        return 2
    share = _read_share(args).strip()
    try:
        answer = httpx.post(
            args.url.rstrip("/") + "/v1/vault/unseal",
            json={"share": share},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
    except httpx.HTTPError as exc:
        print(f"error: the server at {args.url} did not answer: {exc}", file=sys.stderr)
        return 1
    print(answer.text)
    return 0 if answer.status_code == 200 else 1


def cmd_vault_status(args: argparse.Namespace) -> int:
    status = _vault(_container(needs_keys=False)).status(detailed=True)
    data = status.as_dict()
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    if not status.initialized:
        print("vault: not initialized (zeropay vault init)")
        return 1
    sealed = [p for p in status.processes if p.sealed]
    print(
        f"vault {status.vault_id}: threshold {status.threshold} of {status.shares}, "
        f"key version {status.generation}{' (DEVELOPMENT)' if status.development else ''}"
    )
    print(f"processes: {len(status.processes)} running, {len(sealed)} sealed")
    for p in status.processes:
        print(f"  {p.id}  {p.host}:{p.pid}  {'sealed' if p.sealed else 'unsealed'}")
    print("keys:")
    for k in status.keys:
        print(f"  {k.purpose:10} v{k.version:<3} {k.state:9} {k.keys}")
    return 0


def cmd_vault_seal(_args: argparse.Namespace) -> int:
    _vault(_container(needs_keys=False)).seal_everywhere()
    print("every process seals within a second")
    return 0


def cmd_vault_rotate(_args: argparse.Namespace) -> int:
    vault = _vault(_container(needs_keys=True))
    version = vault.rotate()
    print(f"key version {version}: new data is encrypted under it; run `zeropay vault rewrap`")
    return 0


def cmd_vault_rewrap(args: argparse.Namespace) -> int:
    from zeropay.adapters.sql.encrypted import ENCRYPTED_COLUMNS
    from zeropay.adapters.vault.rewrap import rewrap

    container = _container(needs_keys=True)
    report = rewrap(_vault(container), container.engine, ENCRYPTED_COLUMNS, batch=args.batch)
    print(json.dumps(report.as_dict()))
    return 0


def cmd_vault_custodian_add(args: argparse.Namespace) -> int:
    token = _vault(_container(needs_keys=False)).add_custodian(args.name)
    print(token)
    print("shown once: the custodian's credential for POST /v1/vault/unseal", file=sys.stderr)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="zeropay", description="ZeroPay micropayment platform")
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the HTTP API")
    serve.add_argument("--host", default="localhost")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(func=cmd_serve)
    sub.add_parser("migrate", help="create or upgrade the schema").set_defaults(func=cmd_migrate)
    sub.add_parser("demo", help="seed demo payers and a merchant").set_defaults(func=cmd_demo)
    ledger = sub.add_parser("ledger", help="ledger tools").add_subparsers(dest="sub", required=True)
    ledger.add_parser("verify", help="check every ledger invariant").set_defaults(
        func=cmd_ledger_verify
    )
    rev = ledger.add_parser("reverse", help="correct a posted top-up with a reversing transfer")
    rev.add_argument("transfer_id")
    rev.add_argument("--reason", required=True)
    rev.set_defaults(func=cmd_ledger_reverse)
    audit = sub.add_parser("audit", help="audit log tools").add_subparsers(
        dest="sub", required=True
    )
    audit.add_parser("verify", help="check the hash chain").set_defaults(func=cmd_audit_verify)
    merchant = sub.add_parser("merchant", help="merchants").add_subparsers(
        dest="sub", required=True
    )
    create = merchant.add_parser("create", help="create a merchant and its first API key")
    create.add_argument("name")
    create.add_argument("--mcc", help="ISO 18245 merchant category code (four digits)")
    create.set_defaults(func=cmd_merchant_create)
    key_create = merchant.add_parser("key-create", help="issue another API key")
    key_create.add_argument("merchant_id")
    key_create.add_argument("--scopes", default="payments:read,payments:write,refunds:write")
    key_create.add_argument("--label", default="cli")
    key_create.set_defaults(func=cmd_key_create)
    key_revoke = merchant.add_parser("key-revoke", help="revoke an API key")
    key_revoke.add_argument("merchant_id")
    key_revoke.add_argument("key_id")
    key_revoke.set_defaults(func=cmd_key_revoke)
    operator = sub.add_parser(
        "operator", help="operator roles (support reads the review queue; risk decides)"
    ).add_subparsers(dest="sub", required=True)
    from zeropay.domain.operators import Role

    roles = [r.value for r in Role]
    op_grant = operator.add_parser("grant", help="give an account an operator role")
    op_grant.add_argument("email")
    op_grant.add_argument("--role", required=True, choices=roles)
    op_grant.set_defaults(func=cmd_operator_grant)
    op_revoke = operator.add_parser("revoke", help="take an operator role away")
    op_revoke.add_argument("email")
    op_revoke.add_argument("--role", required=True, choices=roles)
    op_revoke.set_defaults(func=cmd_operator_revoke)
    operator.add_parser("list", help="every operator role, oldest grant first").set_defaults(
        func=cmd_operator_list
    )
    user = sub.add_parser("user", help="payer accounts").add_subparsers(dest="sub", required=True)
    erase = user.add_parser(
        "erase", help="erase a user: crypto-shred personal data, keep the email for AML"
    )
    erase.add_argument("user_id")
    erase.set_defaults(func=cmd_user_erase)
    unfreeze = user.add_parser(
        "unfreeze", help='unfreeze an account frozen by "this wasn\'t me" (after checking)'
    )
    unfreeze.add_argument("user", help="email address or user id")
    unfreeze.add_argument("--reason", required=True, help="why, kept in the audit log")
    unfreeze.set_defaults(func=cmd_user_unfreeze)
    fraud = sub.add_parser(
        "fraud", help="fraud reports and the fraud rate (transaction risk analysis)"
    ).add_subparsers(dest="sub", required=True)
    fraud_report = fraud.add_parser("report", help="report a payment as fraud")
    fraud_report.add_argument("payment_id")
    fraud_report.add_argument("--kind", required=True, choices=["chargeback", "refund_fraud"])
    fraud_report.add_argument("--amount", type=int, help="minor units (default: all captured)")
    fraud_report.add_argument("--reason", help="why, kept in the audit log")
    fraud_report.set_defaults(func=cmd_fraud_report)
    fraud_status = fraud.add_parser(
        "status", help="the 90-day fraud rate, closed quarters and where TRA is on"
    )
    fraud_status.add_argument("--profile", help="an exemption profile (default: the configured)")
    fraud_status.add_argument("--json", action="store_true")
    fraud_status.set_defaults(func=cmd_fraud_status)
    devmail = sub.add_parser("devmail", help="a local SMTP server that keeps mail (development)")
    devmail.add_argument("--host", default="localhost")
    devmail.add_argument("--port", type=int, default=8025)
    devmail.add_argument("--dir", default="var/mail")
    devmail.set_defaults(func=cmd_devmail)
    dpop = sub.add_parser("dpop", help="print a DPoP proof for one request (development)")
    dpop.add_argument("method")
    dpop.add_argument("url")
    dpop.add_argument("--token", help="the access token the request carries (sets ath)")
    dpop.add_argument("--key", default="var/dev-device-key.pem")
    dpop.set_defaults(func=cmd_dpop)
    policy = sub.add_parser("policy", help="authentication policy").add_subparsers(
        dest="sub", required=True
    )
    check = policy.add_parser("check", help="validate a policy file")
    check.add_argument("file")
    check.set_defaults(func=cmd_policy_check)
    table = policy.add_parser(
        "table", help="print what each device class may use at each point (Markdown)"
    )
    table.add_argument("file", nargs="?", help="a policy file (default: the shipped policy)")
    table.set_defaults(func=cmd_policy_table)
    risk = sub.add_parser("risk", help="risk engine tools").add_subparsers(
        dest="sub", required=True
    )
    replay = risk.add_parser("replay", help="decide a JSON-lines file of past events")
    replay.add_argument("events", help="the events, one JSON object per line ('-': stdin)")
    replay.add_argument("-o", "--output", required=True, help="where the decisions go")
    replay.add_argument("--config", help="risk rules (default: the shipped policies/risk.toml)")
    replay.add_argument(
        "--no-geoip", action="store_true", help="use only the places the events carry"
    )
    replay.set_defaults(func=cmd_risk_replay)
    simulate = risk.add_parser("simulate", help="write labelled synthetic events")
    simulate.add_argument("-o", "--output", required=True)
    simulate.add_argument("--seed", type=int, default=1)
    simulate.add_argument("--users", type=int, default=400)
    simulate.add_argument("--days", type=int, default=30)
    simulate.set_defaults(func=cmd_risk_simulate)
    scoring = risk.add_parser(
        "score", help="attacks stopped and honest friction; exit 1 when a target is missed"
    )
    scoring.add_argument("events")
    scoring.add_argument("decisions")
    scoring.add_argument("--json", action="store_true")
    scoring.set_defaults(func=cmd_risk_score)
    job = sub.add_parser("jobs", help="background jobs").add_subparsers(dest="sub", required=True)
    job.add_parser("run", help="run due jobs once").set_defaults(func=cmd_jobs_run)
    hooks = sub.add_parser("webhooks", help="merchant webhooks").add_subparsers(
        dest="sub", required=True
    )
    deliver = hooks.add_parser("deliver", help="fan out new events and send due deliveries")
    deliver.add_argument("--once", action="store_true", help="one round, then exit")
    deliver.add_argument("--interval", type=float, default=2.0, help="seconds between rounds")
    deliver.set_defaults(func=cmd_webhooks_deliver)
    _vault_parsers(sub)
    return p


def _vault_parsers(sub: Any) -> None:
    vault = sub.add_parser("vault", help="the key vault").add_subparsers(dest="sub", required=True)
    init = vault.add_parser("init", help="create the root key and split it among custodians")
    init.add_argument("--shares", type=int, default=5)
    init.add_argument("--threshold", type=int, default=3)
    init.add_argument("--out-dir", help="write each share to a file here instead of stdout")
    init.add_argument(
        "--custodian-key",
        action="append",
        help="an X25519 public key (PEM), one per share in order: each share file is sealed to it",
    )
    init.set_defaults(func=cmd_vault_init)
    unseal = vault.add_parser("unseal", help="send one share to a server's unseal API")
    unseal.add_argument("--url", required=True, help="a server, e.g. https://pay.example.com")
    unseal.add_argument(
        "--token-file", help="the custodian credential (or ZEROPAY_CUSTODIAN_TOKEN)"
    )
    unseal.add_argument("--share-file", help="read the share from a file (default: stdin)")
    unseal.add_argument("--private-key", help="the custodian's X25519 private key (PEM)")
    unseal.set_defaults(func=cmd_vault_unseal)
    status = vault.add_parser("status", help="sealed or not, key versions, processes")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_vault_status)
    vault.add_parser("seal", help="seal every server").set_defaults(func=cmd_vault_seal)
    vault.add_parser("rotate", help="new key versions for new data").set_defaults(
        func=cmd_vault_rotate
    )
    rewrap = vault.add_parser("rewrap", help="re-encrypt every field under the current keys")
    rewrap.add_argument("--batch", type=int, default=500)
    rewrap.set_defaults(func=cmd_vault_rewrap)
    custodian = vault.add_parser("custodian-add", help="a credential for the unseal API")
    custodian.add_argument("name")
    custodian.set_defaults(func=cmd_vault_custodian_add)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from zeropay.domain.errors import ZeroPayError

        if isinstance(exc, ZeroPayError):
            print(f"error [{exc.code}]: {exc.message}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    raise SystemExit(main())
