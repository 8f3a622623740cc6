"""`gatekeeper gerrit-sim`: run the Gerrit simulator standalone (demo, manual testing)."""

from __future__ import annotations

import argparse
import os
import signal
import threading


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("gerrit-sim", help="run the Gerrit simulator (SSH, stream-events, git) standalone")
    p.add_argument("--root", required=True, help="directory for the bare repos (created if missing)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=29418, help="SSH port (default 29418; 0 picks a free one)")
    p.add_argument("--web-url", default="https://review.example.com", help="base of change URLs")
    p.add_argument("--host-key", help="host key file (ECDSA; generated there if missing)")
    p.add_argument("--account", action="append", default=[], metavar="NAME[=PUBKEY_FILE]",
                   help="add a user; without a key file one is generated under ROOT/keys (repeatable)")
    p.add_argument("--project", action="append", default=[], metavar="NAME", help="create a project (repeatable)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gatekeeper.sim.gerrit import GerritSimulator

    root = os.path.abspath(args.root)
    sim = GerritSimulator(root, host=args.host, port=args.port, web_url=args.web_url,
                          host_key_file=args.host_key or os.path.join(root, "ssh_host_ecdsa_key"))
    for spec in args.account:
        name, _, key = spec.partition("=")
        account = sim.add_account(name, public_key=key or None,
                                  key_dir=None if key else os.path.join(root, "keys"))
        if account.key_file:
            print(f"account {name}: private key {account.key_file}")
    for name in args.project:
        sim.create_project(name)
    sim.start()
    print(f"Gerrit simulator on {sim.host}:{sim.port} (ssh -p {sim.port} USER@{sim.host} gerrit version)",
          flush=True)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    try:
        done.wait()
    finally:
        sim.stop()
    return 0
