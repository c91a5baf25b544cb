"""The ``zeropay`` command."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from zeropay.config import ConfigError, Settings

if TYPE_CHECKING:
    from zeropay.bootstrap import Container


def _container(settings: Settings | None = None) -> Container:
    from zeropay.bootstrap import build

    return build(settings or Settings.from_env())


def cmd_migrate(_args: argparse.Namespace) -> int:
    from zeropay.adapters.sql.database import make_engine
    from zeropay.adapters.sql.migrate import current_revision, migrate

    settings = Settings.from_env()
    engine = make_engine(settings.database_url)
    migrate(engine)
    print(f"database at revision {current_revision(engine)}")
    return 0


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


def cmd_demo(_args: argparse.Namespace) -> int:
    from zeropay.services.demo import seed

    container = _container()
    print(seed(container.ctx))
    return 0


def cmd_ledger_verify(_args: argparse.Namespace) -> int:
    from zeropay.services import ledger_check

    accounts, transfers, violations = ledger_check.verify(_container().ctx)
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

    report = audit.verify(_container().ctx)
    for b in report.breaks:
        print(f"BREAK {b.kind} at seq {b.seq}: {b.message}")
    print(
        f"audit log {'FAILED' if report.breaks else 'ok'}: {report.entries} entries, "
        f"{len(report.breaks)} breaks"
    )
    return 1 if report.breaks else 0


def cmd_merchant_create(args: argparse.Namespace) -> int:
    from zeropay.services import merchants

    merchant_id, key = merchants.create_merchant(_container().ctx, name=args.name)
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


def cmd_devmail(args: argparse.Namespace) -> int:
    from pathlib import Path

    from zeropay.adapters.mail import run_dev_mail_server

    run_dev_mail_server(host=args.host, port=args.port, directory=Path(args.dir))
    return 0


def cmd_jobs_run(_args: argparse.Namespace) -> int:
    from zeropay.services import jobs

    ctx = _container().ctx
    jobs.register(ctx)
    print(json.dumps(jobs.run_due(ctx, owner=f"cli-{os.getpid()}")))
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
    devmail = sub.add_parser("devmail", help="a local SMTP server that keeps mail (development)")
    devmail.add_argument("--host", default="localhost")
    devmail.add_argument("--port", type=int, default=8025)
    devmail.add_argument("--dir", default="var/mail")
    devmail.set_defaults(func=cmd_devmail)
    job = sub.add_parser("jobs", help="background jobs").add_subparsers(dest="sub", required=True)
    job.add_parser("run", help="run due jobs once").set_defaults(func=cmd_jobs_run)
    return p


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
