"""`gatekeeper gerrit-sim`: run the Gerrit simulator standalone (demo, manual testing, a deployment's stand-in)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING

from gatekeeper.cmd import args as types
from gatekeeper.cmd.signals import wait_until_set

if TYPE_CHECKING:
    from gatekeeper.sim.gerrit import Account, GerritSimulator

log = logging.getLogger("gatekeeper.sim.gerrit.cli")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("gerrit-sim", help="run the Gerrit simulator (SSH, stream-events, git) standalone")
    p.add_argument("--data-dir", "--root", dest="data_dir", required=True, metavar="DIR",
                   help="where the repositories, keys and state live (created if missing); a restart with the "
                        "same directory keeps every project, change, vote, message and event")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=types.port, default=29418, help="SSH port (default 29418; 0 picks a free one)")
    p.add_argument("--http-port", type=types.port, default=None, metavar="PORT",
                   help="serve <web-url>/tools/hooks/commit-msg over HTTP on this port (0 picks a free one)")
    p.add_argument("--web-url", default=None,
                   help="base of change URLs (default http://HOST:HTTP_PORT with --http-port, else "
                        "https://review.example.com)")
    p.add_argument("--host-key", help="host key file (ECDSA; default DIR/ssh_host_ecdsa_key, generated if missing)")
    p.add_argument("--account", action="append", default=[], metavar="NAME[=PUBKEY_FILE]",
                   help="add a user; without a key file one is generated under DIR/keys (repeatable)")
    p.add_argument("--project", action="append", default=[], metavar="NAME",
                   help="create a project unless it exists (repeatable)")
    p.add_argument("--reference-projects", action="store_true",
                   help="create the eight reference projects of layouts/openstack.yaml with the demo content "
                        "(nova and devstack stand-ins whose exercises really run), unless they exist")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gatekeeper.config.schema_parts import project_name_problem
    from gatekeeper.sim.gerrit import GerritSimulator
    from gatekeeper.sim.gerrit.persist import StateError

    for name in args.project:  # before anything is created: a name like ../../x would be a path out of DIR
        problem = project_name_problem(name)
        if problem:
            print(f"gerrit-sim: --project {name!r} {problem}", file=sys.stderr)
            return 2
    root = os.path.abspath(args.data_dir)
    web_url = args.web_url
    if web_url is None and args.http_port is not None:
        if args.http_port == 0:
            print("gerrit-sim: --http-port 0 needs --web-url (change URLs must name the port)", file=sys.stderr)
            return 2
        web_url = f"http://{args.host}:{args.http_port}"
    try:
        sim = GerritSimulator(root, host=args.host, port=args.port, web_url=web_url or "https://review.example.com",
                              host_key_file=args.host_key or os.path.join(root, "ssh_host_ecdsa_key"),
                              http_port=args.http_port, persist=True)
    except StateError as e:
        print(f"gerrit-sim: {e}", file=sys.stderr)
        return 1
    for spec in args.account:
        name, _, key = spec.partition("=")
        if key and not os.path.exists(key):
            print(f"gerrit-sim: --account {spec}: public key file {key} not found", file=sys.stderr)
            return 2
        known = sim.accounts.get(name)
        if known is not None and (known.key_file if not key else _has_key(known, key)):
            account = known  # kept from an earlier run, with its key
        else:
            account = sim.add_account(name, public_key=key or None,
                                      key_dir=None if key else os.path.join(root, "keys"))
        if account.key_file:
            print(f"account {name}: private key {account.key_file}")
    for name in args.project:
        if name not in sim.projects:
            sim.create_project(name)
    if args.reference_projects:
        seed_reference_projects(sim)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # before saying we are up: a stop right after must be clean
        signal.signal(sig, lambda *_: done.set())
    sim.start()
    where = f"; HTTP on {sim.host}:{sim.http_port} (/tools/hooks/commit-msg)" if sim.http_port is not None else ""
    print(f"Gerrit simulator on {sim.host}:{sim.port} (ssh -p {sim.port} USER@{sim.host} gerrit version){where}",
          flush=True)
    try:
        wait_until_set(done)
    finally:
        sim.stop()
    return 0


def _has_key(account: Account, key_file: str) -> bool:
    from gatekeeper.sim.gerrit.simulator import _load_public_key

    key = _load_public_key(key_file)
    return any(k.asbytes() == key.asbytes() for k in account.public_keys)


def seed_reference_projects(sim: GerritSimulator) -> list[str]:
    """Create the reference projects that do not exist yet, each with its demo content on master."""
    from gatekeeper.sim.reference_projects import REFERENCE_PROJECTS, seed_project

    created = []
    for name in REFERENCE_PROJECTS:
        if name in sim.projects:
            continue
        project = sim.create_project(name)
        tip = seed_project(name, project.repo.path)
        log.info("seeded %s with the demo content (master at %s)", name, tip[:7])
        created.append(name)
    return created
