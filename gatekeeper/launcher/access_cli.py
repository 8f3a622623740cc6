"""`gatekeeper hold-access`: put a developer's SSH key on a node held after a failed build, list and revoke grants.

Run by operators (it speaks to ZooKeeper with the deployment's credentials); developers ask through the admin API
with their own token. The launcher installs the key and removes it when the grant ends.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time

from gatekeeper.cli import add_config_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("hold-access", help="give a developer SSH access to a held node; list or revoke grants")
    add_config_args(p)
    p.add_argument("node", nargs="?", help="the held node")
    p.add_argument("--key", metavar="FILE", help="the developer's OpenSSH public key file (e.g. id_ed25519.pub)")
    p.add_argument("--user", help="whose key it is (default: the owner of the change the node is held for)")
    p.add_argument("--hours", type=float, help="how long (default and at most: until the hold expires)")
    p.add_argument("--list", action="store_true", help="list the grants")
    p.add_argument("--revoke", metavar="ID", help="end a grant now (the key is removed from the node)")
    p.add_argument("--json", action="store_true", help="machine-readable output (with --list)")
    p.set_defaults(func=cmd_hold_access)


def cmd_hold_access(args: argparse.Namespace) -> int:
    from gatekeeper.config.service import load_service_config
    from gatekeeper.zk import access
    from gatekeeper.zk.client import ZKClient

    chosen = [bool(args.node), bool(args.list), bool(args.revoke)]
    if sum(chosen) != 1:
        print("gatekeeper hold-access: give a node (with --key), or --list, or --revoke ID", file=sys.stderr)
        return 2
    key_text = ""
    if args.node:
        if not args.key:
            print("gatekeeper hold-access: --key FILE is required to grant access", file=sys.stderr)
            return 2
        try:
            with open(args.key, encoding="utf-8") as f:
                key_text = f.read(16384)
        except (OSError, UnicodeDecodeError) as exc:
            print(f"gatekeeper hold-access: cannot read the key file {args.key}: {exc}", file=sys.stderr)
            return 2
    config = load_service_config(args.config)
    settings = config.section("hold-access")
    zk = ZKClient(config.get("zookeeper", "hosts"), **config.zk_kwargs()).start()
    operator = f"operator {getpass.getuser()}"
    try:
        if args.list:
            grants = [g for g, _ in access.list_grants(zk)]
            if args.json:
                print(json.dumps([g.to_dict() for g in grants], indent=2))
            for g in [] if args.json else grants:
                print(f"{g.id}  node {g.node}  {g.user:<12} {g.state:<9} until {_utc(g.expires)}"
                      f"  asked by {g.requested_by}{'  (' + g.message + ')' if g.message else ''}")
            return 0
        if args.revoke:
            grant = access.revoke(zk, args.revoke, operator)
            print(f"grant {grant.id} revoked: {grant.user}'s key comes off node {grant.node}")
            return 0
        user = args.user or access.node_owner(zk, args.node)
        hours = args.hours
        if settings.get("max-hours") and (hours is None or hours > settings["max-hours"]):
            hours = float(settings["max-hours"])
        grant = access.request_access(zk, args.node, user, key_text, operator, operator=True, hours=hours,
                                      enabled=bool(settings.get("enabled", True)))
        print(f"grant {grant.id}: {user}'s key goes on node {args.node} until {_utc(grant.expires)}; "
              f"the launcher installs it within seconds (see: gatekeeper hold-access --list)")
        return 0
    except access.AccessRefused as exc:
        print(f"gatekeeper hold-access: {exc}", file=sys.stderr)
        return 1
    finally:
        zk.stop()


def _utc(when: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(when))
