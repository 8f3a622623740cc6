"""`gatekeeper providers [--json]`, `gatekeeper drain <provider>`, `gatekeeper undrain <provider>`.

Provider health as the launchers publish it (state, recent error rate, boot-time percentiles, backing off
until), and the operators' drain switch, which lives in ZooKeeper so that any launcher (and the admin API) sees it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from gatekeeper.cmd import add_config_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("providers", help="list node providers: health, backoff, drained")
    add_config_args(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_providers)

    p = sub.add_parser("drain", help="drain a provider: launch nothing on it, delete its idle ready nodes")
    add_config_args(p)
    p.add_argument("provider")
    p.add_argument("--reason", default="", help="why (shown by `gatekeeper providers`)")
    p.set_defaults(func=cmd_drain)

    p = sub.add_parser("undrain", help="let a drained provider launch again")
    add_config_args(p)
    p.add_argument("provider")
    p.set_defaults(func=cmd_undrain)


def _zk(args):
    from gatekeeper.config.settings import load_service_config
    from gatekeeper.zk.client import ZKClient

    config = load_service_config(args.config)
    return ZKClient(config.get("zookeeper", "hosts"), **config.zk_kwargs()).start()


def _fmt_seconds(value) -> str:
    return "-" if value is None else f"{value:.1f}s"


def cmd_providers(args: argparse.Namespace) -> int:
    from gatekeeper.zk.nodes import providers_status

    zk = _zk(args)
    try:
        rows = providers_status(zk)
    finally:
        zk.stop()
    if args.json:
        print(json.dumps(rows, indent=2, sort_keys=True))
        return 0
    print(f"{'provider':<16} {'state':<12} {'live':<5} {'errors':>7} {'boot p50':>9} {'boot p95':>9}  note")
    for row in rows:
        state = "drained" if row["drained"] else row.get("state", "unknown")
        note = ""
        if row["drained"]:
            note = f"drained: {row['drain_reason'] or 'no reason given'}"
        elif row.get("backing_off_until"):
            left = max(0.0, row["backing_off_until"] - time.time())
            note = f"backing off for {left:.0f}s more; last error: {row.get('last_error', '')}"
        rate = f"{100 * row.get('error_rate', 0.0):.0f}%" if row.get("recent_boots") else "-"
        print(f"{row['name']:<16} {state:<12} {'yes' if row['live'] else 'no':<5} {rate:>7} "
              f"{_fmt_seconds(row.get('boot_p50_s')):>9} {_fmt_seconds(row.get('boot_p95_s')):>9}  {note}")
    return 0


def _set_drained(args: argparse.Namespace, drained: bool) -> int:
    from gatekeeper.config.store import read_layout
    from gatekeeper.zk.nodes import NodeStore

    zk = _zk(args)
    try:
        store = NodeStore(zk)
        try:
            layout = read_layout(zk)
        except Exception:  # an unreadable layout must not stop an operator from draining
            layout = None
        known = set(store.provider_names()) | set(layout.nodepool.providers if layout is not None else ())
        if args.provider not in known:
            print(f"gatekeeper {'drain' if drained else 'undrain'}: no provider named {args.provider!r} "
                  f"(known: {', '.join(sorted(known)) or 'none'})", file=sys.stderr)
            return 1
        store.set_drained(args.provider, drained, getattr(args, "reason", ""))
    finally:
        zk.stop()
    print(f"provider {args.provider} {'drained' if drained else 'undrained'}")
    return 0


def cmd_drain(args: argparse.Namespace) -> int:
    return _set_drained(args, True)


def cmd_undrain(args: argparse.Namespace) -> int:
    return _set_drained(args, False)
