"""Launcher commands: `gatekeeper launcher` (the service) and the operators' `nodes`, `images`, `image-build`,
`image-delete`, `requests`, `hold`, `release`, `delete-node`, `autohold` and `hold-access` (a developer's SSH key
on a held node). They follow Nodepool's CLI where it has the same command (`list`, `image-list`, `request-list`,
`delete [--now]`, ...), under gatekeeper's names, with Nodepool's as aliases where they fit."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from kazoo.exceptions import NoNodeError

from gatekeeper.cmd import add_config_args
from gatekeeper.cmd import args as types
from gatekeeper.cmd.signals import wait_until_set

if TYPE_CHECKING:
    from gatekeeper.config.model import Layout
    from gatekeeper.zk.client import ZKClient
    from gatekeeper.zk.node_records import Node


HAND_OUT_SWITCH_INTERVAL = 0.0005  # seconds (see cmd_launcher)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("launcher", help="run the node launcher")
    add_config_args(p)
    p.add_argument("-l", "--layout", metavar="DIR", help="layout file or directory (default: from config)")
    p.set_defaults(func=cmd_launcher)

    p = sub.add_parser("nodes", help="list nodes (as Nodepool's list: server id, state, age, locked)")
    add_config_args(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--detail", action="store_true",
                   help="more columns: pool, image build, user, launcher, request, hold expiry, comment")
    p.set_defaults(func=cmd_nodes)

    # an image build here is one provider's snapshot: Nodepool's builds and uploads in one list
    p = sub.add_parser("images", aliases=["image-list", "dib-image-list"],
                       help="list image builds, each on its provider (Nodepool's image-list and dib-image-list)")
    add_config_args(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_images)

    p = sub.add_parser("image-build", help="build an image now, whatever its age (every provider, or one)")
    add_config_args(p)
    p.add_argument("image", type=types.identifier("image"))
    p.add_argument("--provider", type=types.identifier("provider"), help="only this provider")
    p.set_defaults(func=cmd_image_build)

    p = sub.add_parser("image-delete", help="delete one build of an image: never booted again, removed from the "
                                            "cloud once no node uses it")
    add_config_args(p)
    p.add_argument("image", type=types.identifier("image"))
    p.add_argument("--provider", type=types.identifier("provider"), required=True)
    p.add_argument("--build", "--build-id", dest="build", type=types.identifier("build"), required=True,
                   help="the build id (`images`)")
    p.set_defaults(func=cmd_image_delete)

    p = sub.add_parser("requests", aliases=["request-list"],
                       help="list node requests: state, priority, nodes, providers that declined (Nodepool's "
                            "request-list)")
    add_config_args(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_requests)

    p = sub.add_parser("hold", help="hold a node (ready or in use) with a reason")
    add_config_args(p)
    p.add_argument("node", type=types.identifier("node"))
    p.add_argument("--reason", required=True, type=types.given_reason)
    p.add_argument("--hours", type=types.hold_hours, default=24.0, help="hold expiry (default 24, at most 720)")
    p.add_argument("--replace", action="store_true",
                   help="hold a node held already anew: this reason and expiry replace its hold's (may shorten it)")
    p.set_defaults(func=cmd_hold)

    p = sub.add_parser("release", help="release a held node (it is then deleted)")
    add_config_args(p)
    p.add_argument("node", type=types.identifier("node"))
    p.set_defaults(func=cmd_release)

    p = sub.add_parser("delete-node", help="delete a node now")
    add_config_args(p)
    p.add_argument("node", type=types.identifier("node"))
    p.add_argument("--now", action="store_true",
                   help="wait until its launcher has deleted its server and record (as Nodepool's delete --now)")
    p.add_argument("--timeout", type=types.wait_seconds, default=300.0, help="seconds to wait with --now")
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("autohold", help="hold the nodes of matching failed builds (list, add, info, delete)")
    add_config_args(p)
    p.add_argument("action", choices=("list", "add", "info", "delete"))
    p.add_argument("--id", type=types.autohold_id, help="autohold id (info, delete)")
    p.add_argument("--project", default="")
    p.add_argument("--job", default="")
    p.add_argument("--change", default=".*", type=types.autohold_change,
                   help="regex on 'change,patchset', or a change number (any patch set, as zuul-client's)")
    p.add_argument("--count", type=types.positive_int, default=1)
    p.add_argument("--hours", type=types.hold_hours, default=24.0, help="hold expiry (default 24, at most 720)")
    p.add_argument("--reason", default="", type=types.reason)
    p.set_defaults(func=cmd_autohold)
    # zuul-client's spellings: autohold-list, autohold-info ID, autohold-delete ID
    for action in ("list", "info", "delete"):
        p = sub.add_parser(f"autohold-{action}", help=f"`autohold {action}`, as zuul-client spells it")
        add_config_args(p)
        if action != "list":
            p.add_argument("id", type=types.autohold_id, help="autohold id")
        p.set_defaults(func=cmd_autohold, action=action)

    p = sub.add_parser("hold-access", help="give a developer SSH access to a held node; list or revoke grants")
    add_config_args(p)
    p.add_argument("node", nargs="?", type=types.identifier("node"), help="the held node")
    p.add_argument("--key", metavar="FILE", help="the developer's OpenSSH public key file (e.g. id_ed25519.pub)")
    p.add_argument("--user", help="whose key it is (default: the owner of the change the node is held for)")
    p.add_argument("--hours", type=types.hold_hours,
                   help="how long (default and at most: until the hold expires)")
    p.add_argument("--list", action="store_true", help="list the grants")
    p.add_argument("--revoke", metavar="ID", help="end a grant now (the key is removed from the node)")
    p.add_argument("--json", action="store_true", help="machine-readable output (with --list)")
    p.set_defaults(func=cmd_hold_access)


def _zk(args, service: bool = False):
    """The config and a connected client; an operator command gives up on an unreachable ZooKeeper quickly."""
    from gatekeeper.config.settings import load_service_config
    from gatekeeper.zk.client import OPERATOR_CONNECT_TIMEOUT, ZKClient

    config = load_service_config(args.config)
    client = ZKClient(config.get("zookeeper", "hosts"), **config.zk_kwargs())
    return config, client.start() if service else client.start(timeout=OPERATOR_CONNECT_TIMEOUT)


@contextlib.contextmanager
def _connected(args: argparse.Namespace) -> Iterator[ZKClient]:
    """An operator command's ZooKeeper client, stopped when the command is done."""
    _, zk = _zk(args)
    try:
        yield zk
    finally:
        zk.stop()


def cmd_launcher(args: argparse.Namespace) -> int:
    from gatekeeper.config.layout import load_layout
    from gatekeeper.launcher.launcher import Launcher

    config, zk = _zk(args, service=True)
    layout = load_layout(args.layout or config.layout_path, None)
    ssh_key = config.get("launcher", "ssh-key")
    if not ssh_key:
        print(f"{config.source}: launcher: ssh-key is required (the private key nodes are reached with)",
              file=sys.stderr)
        return 3
    launcher = Launcher(zk, layout.nodepool, ssh_key=str(config.path("launcher", "ssh-key")),
                        clouds_yaml=str(config.path("launcher", "clouds-yaml")),
                        cleanup_interval=float(config.get("launcher", "cleanup-interval", 3600)))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    # The thread that decides hand-outs waits on ZooKeeper answers while the provider threads spend CPU in the
    # cloud SDK and SSH handshakes: with Python's default 5 ms switch interval each answer could wait that long
    # for the interpreter lock. A hand-out is a few such waits, so a shorter interval cuts its latency under load.
    sys.setswitchinterval(HAND_OUT_SWITCH_INTERVAL)
    launcher.start()
    try:
        wait_until_set(stop)
    finally:
        launcher.stop()
        zk.stop()
    return 0


def _nodes(zk) -> list[tuple[Node, bool]]:
    """Every readable node, oldest first, with whether a consumer holds its lock."""
    from gatekeeper.zk.nodes import NodeStore

    store = NodeStore(zk)
    # unreadable records are skipped (and named once on stderr), never a traceback
    nodes = sorted((n for n, _ in store.load_nodes().values()), key=lambda n: n.created)
    return [(n, store.is_locked(n.id)) for n in nodes]


def _age(t: float) -> str:
    s = int(time.time() - t)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def cmd_nodes(args: argparse.Namespace) -> int:
    with _connected(args) as zk:
        nodes = _nodes(zk)
    if args.json:
        print(json.dumps([n.to_dict() | {"locked": locked} for n, locked in nodes], indent=1))
        return 0
    head = f"{'id':12} {'provider':12} {'label':12} {'server id':36} {'address':21} {'state':9} {'age':>7} locked"
    print(head + ("  pool / image build / user / launcher / request / hold until / comment" if args.detail
                  else "  comment"))
    for n, locked in nodes:
        extra = n.hold_reason if n.state == "hold" else n.comment
        line = (f"{n.id:12} {n.provider:12} {n.label:12} {n.external_id or '-':36} "
                f"{n.address + ':' + str(n.port) if n.address else '-':21} {n.state:9} {_age(n.state_time):>7} "
                f"{'yes' if locked else 'no':6}")
        if args.detail:
            until = _utc_minutes(n.hold_until) if n.state == "hold" and n.hold_until else "-"
            print(f"{line}  {n.pool or '-'} / {n.image_build or '-'} / {n.username} / {n.launcher or '-'} / "
                  f"{n.request or '-'} / {until} / {extra or '-'}")
        else:
            print(f"{line}  {extra[:60]}")
    return 0


def cmd_images(args: argparse.Namespace) -> int:
    from gatekeeper.launcher.images import list_builds
    from gatekeeper.zk import paths

    with _connected(args) as zk:
        builds = []
        for image in _children(zk, paths.IMAGES):
            for provider in _children(zk, f"{paths.IMAGES}/{image}"):
                builds += list_builds(zk.client, image, provider)
        if args.json:
            print(json.dumps([b.to_dict() | {"id": b.id} for b in builds], indent=1))
            return 0
        print(f"{'image':14} {'provider':12} {'build':22} {'state':9} {'age':>7} cloud-image / reason")
        for b in builds:
            print(f"{b.image:14} {b.provider:12} {b.id:22} {b.state:9} {_age(b.created):>7} "
                  f"{b.external_id if b.state != 'failed' else b.reason[:60]}")
        return 0


def cmd_image_build(args: argparse.Namespace) -> int:
    from gatekeeper.zk import paths
    from gatekeeper.zk.provider_store import ProviderStore

    with _connected(args) as zk:
        providers = _children(zk, f"{paths.IMAGES}/{args.image}")
        if not providers:
            print(f"image {args.image}: no builds are known (only images with a prepare script are built, by a "
                  f"running launcher)", file=sys.stderr)
            return 1
        if args.provider and args.provider not in providers:
            print(f"image {args.image}: provider {args.provider} does not build it (it is built on "
                  f"{', '.join(providers)})", file=sys.stderr)
            return 1
        targets = [args.provider] if args.provider else providers
        paused = [p for p in targets if p in _paused_on(zk, args.image)]
        if paused == targets:  # as Nodepool: a paused image is not built, even when asked
            print(f"image {args.image} is paused on {', '.join(paused)}: no build is made there (unpause it in the "
                  f"layout first)", file=sys.stderr)
            return 1
        ProviderStore(zk).request_image_build(args.image, args.provider or "", by=getpass.getuser())
        building = [p for p in targets if p not in paused]
        note = f" (paused on {', '.join(paused)}: not built there)" if paused else ""
        print(f"image {args.image}: a new build was asked for on {', '.join(building)}{note}")
        return 0


def _paused_on(zk, image: str) -> set[str]:
    """The providers on which the published layout pauses `image` (none when no layout can be read)."""
    from gatekeeper.config.store import read_layout
    from gatekeeper.config.yamlfile import ConfigErrors

    try:
        layout = read_layout(zk)
    except (ConfigErrors, ValueError):  # an unreadable layout must not stop a build
        return set()
    if layout is None:
        return set()
    return {p.name for p in layout.nodepool.providers.values() if any(i.name == image and i.pause for i in p.images)}


def cmd_image_delete(args: argparse.Namespace) -> int:
    from gatekeeper.zk.provider_store import ProviderStore

    with _connected(args) as zk:
        store = ProviderStore(zk)
        build = next((b for b in store.image_builds(args.image, args.provider) if b.id == args.build), None)
        if build is None:
            print(f"image {args.image}: provider {args.provider} has no build {args.build} (see `gatekeeper "
                  f"images`)", file=sys.stderr)
            return 1
        if build.state == "building":
            print(f"image {args.image} build {args.build} is still building; delete it once it has ended",
                  file=sys.stderr)
            return 1
        if not store.retire_image_build(args.image, args.provider, args.build, by=getpass.getuser()):
            print(f"image {args.image}: build {args.build} vanished meanwhile", file=sys.stderr)
            return 1
        print(f"image {args.image} build {args.build} on {args.provider}: deleted; its cloud image goes once no "
              f"node uses it")
        return 0


def _children(zk, path):
    try:
        return sorted(zk.client.get_children(path))
    except NoNodeError:
        return []


def cmd_requests(args: argparse.Namespace) -> int:
    from gatekeeper.launcher.client import NodeRequestClient
    from gatekeeper.zk import paths

    with _connected(args) as zk:
        client = NodeRequestClient(zk)
        reqs = [r for r in (client.get(i) for i in _children(zk, paths.NODE_REQUESTS)) if r is not None]
        if args.json:
            print(json.dumps([r.to_dict() | {"id": r.id} for r in reqs], indent=1))
            return 0
        print(f"{'id':18} {'state':10} {'priority':>8} {'labels':20} {'provider':12} {'age':>7} {'nodes':26} "
              f"{'declined by':20} requestor")
        for r in reqs:
            print(f"{r.id:18} {r.state:10} {r.priority:>8} {','.join(r.labels)[:20]:20} {r.provider or '-':12} "
                  f"{_age(r.created):>7} {','.join(r.nodes) or '-':26} {','.join(r.declined_by) or '-':20} "
                  f"{r.requestor}")
        return 0


def _node_change(args: argparse.Namespace, action, done: str) -> int:
    """Run one operator change of a node (gatekeeper.launcher.client) and say what happened."""
    from gatekeeper.launcher.client import NodeChangeError

    _, zk = _zk(args)
    try:
        action(zk)
    except NodeChangeError as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        zk.stop()
    print(f"node {args.node}: {done}")
    return 0


def cmd_hold(args: argparse.Namespace) -> int:
    from gatekeeper.launcher.client import hold_node

    return _node_change(args, lambda zk: hold_node(zk, args.node, args.reason, args.hours, args.replace),
                        f"held ({args.reason})")


def _to_used(args: argparse.Namespace, allowed: tuple[str, ...]) -> int:
    from gatekeeper.launcher.client import release_node

    return _node_change(args, lambda zk: release_node(zk, args.node, allowed), "will be deleted")


def cmd_release(args: argparse.Namespace) -> int:
    return _to_used(args, ("hold",))


def cmd_delete(args: argparse.Namespace) -> int:
    from gatekeeper.zk.node_changes import delete_node

    code = _node_change(args, lambda zk: delete_node(zk, args.node), "will be deleted")
    if code or not args.now:
        return code
    from gatekeeper.zk.node_changes import wait_node_gone
    from gatekeeper.zk.nodes import NodeStore

    with _connected(args) as zk:
        found = NodeStore(zk).read_node(args.node)
        if found is not None and found[0].provider not in NodeStore(zk).live_provider_names():
            print(f"node {args.node}: no launcher serves provider {found[0].provider} now; the node is deleted when "
                  "one does", file=sys.stderr)
            return 1
        if not wait_node_gone(zk, args.node, args.timeout):
            print(f"node {args.node}: still there after {args.timeout:g}s; its launcher deletes it when it can",
                  file=sys.stderr)
            return 1
    print(f"node {args.node}: deleted")
    return 0


def cmd_autohold(args: argparse.Namespace) -> int:
    from gatekeeper.config.store import unknown_project
    from gatekeeper.launcher.client import add_autohold, delete_autohold, list_autoholds
    from gatekeeper.launcher.model import Autohold
    from gatekeeper.zk import paths

    if args.action in ("info", "delete") and not args.id:
        print(f"gatekeeper autohold {args.action}: --id is required", file=sys.stderr)
        return 2
    if args.action == "add" and not (args.project.strip() and args.reason.strip()):
        # as Zuul's autohold and our admin API: a hold says whose builds it holds and why
        print("gatekeeper autohold add: --project and --reason are required", file=sys.stderr)
        return 2
    if args.action == "add" and unknown_project(None, args.project):  # no Gerrit project has such a name
        print(f"gatekeeper autohold add: {unknown_project(None, args.project)}", file=sys.stderr)
        return 2
    with _connected(args) as zk:
        if args.action == "add":
            refusal = unknown_project(_published_layout(zk), args.project)
            if refusal:
                print(f"gatekeeper autohold add: {refusal}", file=sys.stderr)
                return 1
            ident = add_autohold(zk, Autohold(project=args.project, job=args.job, change=args.change,
                                              count=args.count, hold_hours=args.hours, reason=args.reason))
            print(ident)
        elif args.action in ("info", "delete") and not zk.client.exists(paths.hold(args.id)):
            print(f"no autohold {args.id} (see `gatekeeper autohold list`)", file=sys.stderr)
            return 1
        elif args.action == "info":
            h = next((h for h in list_autoholds(zk) if h.id == args.id), None)
            if h is None:  # deleted meanwhile, or unreadable
                print(f"autohold {args.id} cannot be read (see `gatekeeper autohold list`)", file=sys.stderr)
                return 1
            print(f"id: {h.id}\nproject: {h.project or '*'}\njob: {h.job or '*'}\nchange: {h.change}\n"
                  f"count: {h.count}\nheld nodes: {', '.join(h.held_nodes) or '-'}\n"
                  f"hold hours: {h.hold_hours}\nreason: {h.reason}")
        elif args.action == "delete":
            released = delete_autohold(zk, args.id)
            print(f"autohold {args.id} deleted" + (f"; released the nodes it held: {', '.join(released)}"
                                                   if released else ""))
        else:
            holds = list_autoholds(zk)
            for h in holds:
                print(f"{h.id} project={h.project or '*'} job={h.job or '*'} change={h.change} "
                      f"held={len(h.held_nodes)}/{h.count} hours={h.hold_hours} {h.reason}")
            if not holds:
                print("No autohold requests found")  # as zuul-client's autohold-list
        return 0


def _published_layout(zk: ZKClient) -> Layout | None:
    """The layout the schedulers run, to check names against; None (and a warning) when it cannot be read."""
    from gatekeeper.config.store import read_layout
    from gatekeeper.config.yamlfile import ConfigErrors

    try:
        return read_layout(zk)
    except (ConfigErrors, ValueError, KeyError, TypeError) as exc:
        first = str(exc).split("\n", 1)[0] or type(exc).__name__
        print(f"warning: the published layout cannot be read ({first}); names are not checked against it",
              file=sys.stderr)
        return None


def cmd_hold_access(args: argparse.Namespace) -> int:
    from gatekeeper.zk import access

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
    config, zk = _zk(args)
    settings = config.section("hold-access")
    operator = f"operator {getpass.getuser()}"
    try:
        if args.list:
            grants = [g for g, _ in access.list_grants(zk)]
            if args.json:
                print(json.dumps([g.to_dict() for g in grants], indent=2))
            for g in [] if args.json else grants:
                print(f"{g.id}  node {g.node}  {g.user:<12} {g.state:<9} until {_utc_minutes(g.expires)}"
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
        print(f"grant {grant.id}: {user}'s key goes on node {args.node} until {_utc_minutes(grant.expires)}; "
              f"the launcher installs it within seconds (see: gatekeeper hold-access --list)")
        return 0
    except access.AccessRefused as exc:
        print(f"gatekeeper hold-access: {exc}", file=sys.stderr)
        return 1
    finally:
        zk.stop()


def _utc_minutes(when: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(when))
