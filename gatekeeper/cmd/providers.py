"""`gatekeeper providers [--json]`, `gatekeeper providers info|erase <provider>`, `gatekeeper drain <provider>`,
`gatekeeper undrain <provider>`.

Provider health as the launchers publish it (state, recent error rate, boot-time percentiles, backing off
until), and the operators' drain switch, which lives in ZooKeeper so that any launcher (and the admin API) sees it.
`info` and `erase` are Nodepool's: one provider's image builds and nodes in ZooKeeper, shown or removed (after the
provider left the layout).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from gatekeeper.cmd import add_config_args
from gatekeeper.cmd import args as types


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("providers", help="list node providers: health, backoff, drained; `info` or `erase` one "
                                         "provider's data")
    add_config_args(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_providers)
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    q = actions.add_parser("info", help="a provider's image builds and nodes as ZooKeeper holds them")
    _sub_config_args(q)
    q.add_argument("provider", type=types.identifier("provider"))
    q.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    q.set_defaults(func=cmd_provider_info)
    q = actions.add_parser("erase", help="remove a provider's image builds and nodes from ZooKeeper (after it "
                                         "was removed from the layout; its cloud is not touched)")
    _sub_config_args(q)
    q.add_argument("provider", type=types.identifier("provider"))
    q.add_argument("--force", action="store_true", help="do not ask for confirmation")
    q.set_defaults(func=cmd_provider_erase)

    p = sub.add_parser("drain", help="drain a provider: launch nothing on it, delete its idle ready nodes")
    add_config_args(p)
    p.add_argument("provider")
    p.add_argument("--reason", default="", type=types.reason, help="why (shown by `gatekeeper providers`)")
    p.set_defaults(func=cmd_drain)

    p = sub.add_parser("undrain", help="let a drained provider launch again")
    add_config_args(p)
    p.add_argument("provider")
    p.set_defaults(func=cmd_undrain)


def _sub_config_args(parser: argparse.ArgumentParser) -> None:
    """-c after an action too; unset there, it keeps what was given before the action."""
    parser.add_argument("-c", "--config", metavar="FILE", default=argparse.SUPPRESS,
                        help="service config (default: $GATEKEEPER_CONFIG or none)")


def _zk(args):
    from gatekeeper.config.settings import load_service_config
    from gatekeeper.zk.client import OPERATOR_CONNECT_TIMEOUT, ZKClient

    config = load_service_config(args.config)
    # an operator command gives up on an unreachable ZooKeeper quickly
    return ZKClient(config.get("zookeeper", "hosts"), **config.zk_kwargs()).start(timeout=OPERATOR_CONNECT_TIMEOUT)


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


def _info_tables(data) -> list[str]:
    lines = [f"provider {data.name}{' (served by a running launcher)' if data.live else ''}", "", "image builds:"]
    lines += [f"  {image:20} {', '.join(b.id for b in builds)}" for image, builds in sorted(data.builds.items())]
    lines += ["  none"] if not data.builds else []
    lines += ["", "nodes:", f"  {'id':12} {'server id':38} {'state':9} locked"]
    lines += [f"  {n.id:12} {n.external_id or '-':38} {n.state:9} {'yes' if n.id in data.locked else 'no'}"
              for n in data.nodes]
    return lines


def cmd_provider_info(args: argparse.Namespace) -> int:
    from gatekeeper.zk.node_provider_data import provider_data

    zk = _zk(args)
    try:
        data = provider_data(zk, args.provider)
    finally:
        zk.stop()
    if getattr(args, "json", False):
        print(json.dumps(data.to_dict(), indent=2, sort_keys=True))
    else:
        print("\n".join(_info_tables(data)))
    return 0


def _layout_providers(zk, name: str) -> set[str]:
    """The providers of the published layout (none if none was published yet)."""
    from gatekeeper.config.store import read_layout
    from gatekeeper.zk.node_provider_data import ErasureRefused

    try:
        layout = read_layout(zk)
    except Exception as exc:  # a layout this command cannot read may still have the provider: erase nothing
        raise ErasureRefused(f"the published layout cannot be read ({exc}), so whether it still has provider "
                             f"{name} is unknown: nothing is erased") from None
    return set(layout.nodepool.providers) if layout is not None else set()


def cmd_provider_erase(args: argparse.Namespace) -> int:
    from gatekeeper.zk.node_provider_data import ErasureRefused, check_erasable, erase_provider, provider_data

    zk = _zk(args)
    try:
        listed = provider_data(zk, args.provider)
        check_erasable(listed, _layout_providers(zk, args.provider))
        if not args.force:
            print("\n".join(_info_tables(listed)))
            answer = input(f"\nThis cannot be undone. Erase provider {args.provider}'s data from ZooKeeper? [N/y] ")
            if answer.strip().lower() != "y":
                print("not erased")
                return 1
        # the layout read again: it may have changed while the operator read the listing
        data = erase_provider(zk, args.provider, _layout_providers(zk, args.provider))
    except ErasureRefused as exc:
        print(f"gatekeeper providers erase: {exc}", file=sys.stderr)
        return 1
    except EOFError:  # no terminal to answer from
        print("\ngatekeeper providers erase: no answer (use --force to erase without asking)", file=sys.stderr)
        return 1
    finally:
        zk.stop()
    builds = sum(len(b) for b in data.builds.values())
    erased = len(data.nodes) - len(data.spared)
    left = f"; {len(data.spared)} in use left (erase again once released)" if data.spared else ""
    print(f"provider {args.provider}: erased {builds} image build{'s' * (builds != 1)} and "
          f"{erased} node{'s' * (erased != 1)}{left}")
    return 0
