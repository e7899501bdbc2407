"""`rcc audit verify | anchor | export | public-key` (see docs/AUDIT.md)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from rcc import anchors
from rcc.config import Settings
from rcc.log_audit import AuditReport


def _progress(n: int) -> None:
    print(f"... {n} events", file=sys.stderr)


def _trusted_key(args: argparse.Namespace, settings: Settings) -> Ed25519PublicKey:
    """The public key anchors must be signed with: --public-key, RCC_AUDIT_PUBLIC_KEY,
    or the one derived from RCC_AUDIT_KEY. Never the key an anchor names itself."""
    given = args.public_key or settings.audit.public_key_hex
    if given:
        return anchors.parse_public_key(given)
    if settings.audit.key_hex:
        return anchors.signing_key(settings.audit.key_hex).public_key()
    raise anchors.AnchorKeyError(
        "checking anchors needs the public key they were signed with: --public-key HEX, "
        "RCC_AUDIT_PUBLIC_KEY, or RCC_AUDIT_KEY"
    )


def _load_anchors(paths: list[Path], trusted: Ed25519PublicKey) -> list[anchors.Anchor]:
    found = []
    for path in paths:
        anchor = anchors.read(path)
        anchors.check_signature(anchor, trusted)
        found.append(anchor)
    return found


def _print_report(report: AuditReport, what: str) -> int:
    head = report.chain_head
    print(
        f"checked {report.events} events in {report.streams} streams, "
        f"{report.wallets} wallet balances recomputed"
    )
    print(
        f"log chain: {head.events} events, head position {head.position}, "
        f"chain {head.chain.hex()}; anchors held: {report.anchors_held}"
    )
    if report.ok:
        print(f"audit OK: {what}")
        return 0
    first = report.first_bad_position
    where = f"; first bad position: {first}" if first is not None else ""
    print(f"audit FAILED: {len(report.problems)} problem(s){where}; first: {report.problems[0]}")
    for problem in report.problems[1:20]:
        print(f"  also: {problem}")
    return 1


async def audit_verify(args: argparse.Namespace, settings: Settings) -> int:
    """Full verification (live or of an export), or since a trusted anchor."""
    try:
        paths = list(args.anchor or []) + ([args.since_anchor] if args.since_anchor else [])
        trusted = _trusted_key(args, settings) if paths else None
        loaded = _load_anchors(paths, trusted) if trusted else []
    except (anchors.AnchorKeyError, anchors.AnchorError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.export:
        if args.since_anchor:
            print("error: --since-anchor works on the database; give --anchor", file=sys.stderr)
            return 2
        from rcc.audit_export import verify_export

        if not args.export.is_file():
            print(f"error: {args.export}: no such file", file=sys.stderr)
            return 2
        report = verify_export(args.export, loaded, progress=_progress)
        return _print_report(
            report, "the export's hash chains, log chain, anchors and balances hold"
        )
    return await _verify_live(args, settings, loaded)


async def _verify_live(
    args: argparse.Namespace, settings: Settings, loaded: list[anchors.Anchor]
) -> int:
    from rcc.audit import verify, verify_since
    from rcc.bootstrap import direct_database_url, migrate_database
    from rcc.store.database import connect_owner

    url = direct_database_url(settings)
    await migrate_database(url)
    conn = await connect_owner(url)
    try:
        if args.since_anchor:
            report = await verify_since(conn, loaded[-1], progress=_progress)
            what = f"the log extends the anchor and the {report.events} events after it hold"
            if args.anchor:
                print("note: with --since-anchor, other --anchor files are not checked")
        else:
            report = await verify(conn, progress=_progress, anchors=loaded)
            what = "every hash chain, the log chain, every anchor and every balance holds"
    finally:
        await conn.close()
    return _print_report(report, what)


async def audit_anchor(args: argparse.Namespace, settings: Settings) -> int:
    """Extend the log chain and print (or write) a signed anchor of its head."""
    from rcc.bootstrap import direct_database_url, migrate_database
    from rcc.store.database import connect_owner
    from rcc.store.log_chain import extend_chain

    try:
        key = anchors.signing_key(settings.audit.key_hex)
    except anchors.AnchorKeyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    url = direct_database_url(settings)
    await migrate_database(url)
    conn = await connect_owner(url)
    try:
        head = await extend_chain(conn)
    finally:
        await conn.close()
    signed = anchors.encode(anchors.sign(head, key, datetime.now(UTC)))
    if args.out:
        args.out.write_bytes(signed)
        print(f"anchor of {head.events} events (position {head.position}) written to {args.out}")
    else:
        sys.stdout.write(signed.decode())
    return 0


async def audit_export(args: argparse.Namespace, settings: Settings) -> int:
    """Write the committed log as JSON lines (what GET /audit/events serves): from the
    database, or with --url from a running service with an auditor's token."""
    from rcc.audit_export import export, export_over_http

    if args.url:
        return await _export_over_http(args, export_over_http)
    from rcc.bootstrap import direct_database_url, migrate_database
    from rcc.store.database import connect_owner

    url = direct_database_url(settings)
    await migrate_database(url)
    conn = await connect_owner(url)
    try:
        with args.out.open("wb") as out:
            count = await export(conn, out)
    finally:
        await conn.close()
    print(f"exported {count} events to {args.out}")
    return 0


async def _export_over_http(
    args: argparse.Namespace, run: Callable[[str, str, IO[bytes]], Awaitable[int]]
) -> int:
    import aiohttp

    token = os.environ.get("RCC_AUDIT_TOKEN", "").strip()
    if not token:
        print("error: --url needs an auditor token in RCC_AUDIT_TOKEN", file=sys.stderr)
        return 2
    try:
        with args.out.open("wb") as out:
            count = await run(args.url, token, out)
    except aiohttp.ClientError as error:
        print(f"error: {args.url}: {error}", file=sys.stderr)
        return 1
    print(f"exported {count} events from {args.url} to {args.out}")
    return 0


async def audit_public_key(args: argparse.Namespace, settings: Settings) -> int:
    """Print the public key that checks this service's anchors (give it to auditors)."""
    try:
        key = anchors.signing_key(settings.audit.key_hex)
    except anchors.AnchorKeyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(anchors.public_key_hex(key))
    return 0


def add_audit_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `rcc audit ...` subcommands."""
    audit = sub.add_parser("audit", help="verify, anchor and export the log").add_subparsers(
        dest="action", required=True
    )
    verify = audit.add_parser(
        "verify", help="recompute every chain and balance; check anchors (exit 1 on a problem)"
    )
    verify.add_argument("--anchor", type=Path, action="append", help="anchor FILE (repeatable)")
    verify.add_argument(
        "--since-anchor", type=Path, help="check only the events after this trusted anchor"
    )
    verify.add_argument("--export", type=Path, help="verify this export offline (no database)")
    verify.add_argument("--public-key", help="hex Ed25519 key the anchors must be signed with")
    verify.set_defaults(run=audit_verify)
    anchor = audit.add_parser("anchor", help="a signed checkpoint of the log's head")
    anchor.add_argument("--out", type=Path, help="write it here instead of stdout")
    anchor.set_defaults(run=audit_anchor)
    export = audit.add_parser("export", help="the committed log as JSON lines")
    export.add_argument("--out", type=Path, required=True)
    export.add_argument(
        "--url", help="a service's base URL: read GET /audit/events (token: RCC_AUDIT_TOKEN)"
    )
    export.set_defaults(run=audit_export)
    audit.add_parser("public-key", help="the public key auditors check anchors with").set_defaults(
        run=audit_public_key
    )
