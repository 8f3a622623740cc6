"""`gatekeeper all-in-one`: the whole gate on this machine; with no config, on embedded stand-ins, with a demo."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from gatekeeper.cmd import args as types
from gatekeeper.cmd.signals import wait_forever

log = logging.getLogger("gatekeeper.allinone.cli")
REPO_LAYOUTS = Path(__file__).resolve().parents[2] / "layouts"


def register(sub: argparse._SubParsersAction) -> None:
    from gatekeeper.cmd import add_config_args

    p = sub.add_parser(
        "all-in-one",
        help="run scheduler, merger, launcher, executor and web in one process",
        description="Run every gatekeeper service in one process. Without --config it brings up embedded "
        "stand-ins (a local ZooKeeper, the Gerrit simulator with the eight reference projects, the cloud "
        "simulator as two providers) and plays the demo series against them.",
    )
    add_config_args(p)
    p.add_argument("-l", "--layout", metavar="DIR", help="layout directory (default: the reference layouts/)")
    p.add_argument("--workdir", help="where the embedded stand-ins keep their state (default: a temp dir)")
    p.add_argument("--web-port", type=types.port, default=9000, help="status page port for the embedded setup (9000)")
    p.add_argument("--no-demo", action="store_true", help="do not play the demo series")
    p.add_argument("--keep-running", action="store_true", help="after the demo, keep serving until Ctrl-C")
    p.add_argument("--timeout", type=types.positive_number, default=900,
                   help="give up on the demo after this many seconds")
    p.set_defaults(func=run)


def _sigterm_to_interrupt() -> None:
    def handler(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)
        # Ctrl-C stops everything even when started with SIGINT ignored (from a script's background job, say)
        signal.signal(signal.SIGINT, signal.default_int_handler)


def run(args: argparse.Namespace) -> int:
    from gatekeeper.allinone.demo import Demo, expected_verdicts_met
    from gatekeeper.allinone.service import AllInOne
    from gatekeeper.allinone.world import EmbeddedWorld
    from gatekeeper.config.settings import load_service_config

    _sigterm_to_interrupt()
    logging.getLogger("kazoo").setLevel(logging.ERROR)
    started = time.monotonic()
    world = None
    tmp = None
    aio = None
    try:
        if args.config:
            config = load_service_config(args.config)
            if args.layout:
                config.data["layout"] = args.layout
        else:
            if args.workdir:
                workdir = Path(args.workdir)
            else:
                tmp = tempfile.TemporaryDirectory(prefix="gatekeeper-aio-")
                workdir = Path(tmp.name)
            print(f"starting the embedded stand-ins in {workdir} ...", flush=True)
            world = EmbeddedWorld(workdir, Path(args.layout or REPO_LAYOUTS), web_port=args.web_port).start()
            for part in world.parts:
                print(f"   {part}")
            config = load_service_config(world.config_path)
        aio = AllInOne(config).start()
        print(f"gatekeeper is up ({time.monotonic() - started:.1f}s): status page {aio.web.url}/", flush=True)
        ok = True
        if world is not None and not args.no_demo:
            demo = Demo(world, aio, timeout=args.timeout)
            outcomes = demo.run()
            print(demo.summary(outcomes))
            ok = expected_verdicts_met(outcomes)
            if demo.first_merge_s is not None:
                total = demo.first_merge_s + (demo.started - started)
                print(f"   first merge {total:.0f}s after `gatekeeper all-in-one` started")
            print("   every change ended as expected" if ok else "   SOME CHANGES DID NOT END AS EXPECTED")
        if args.keep_running or args.no_demo:
            print("serving; Ctrl-C stops everything", flush=True)
            wait_forever()
        return 0 if ok else 1
    except KeyboardInterrupt:
        print("\ninterrupted: stopping everything", file=sys.stderr)
        return 130
    finally:
        if aio is not None:
            aio.stop()
        if world is not None:
            world.stop()
        if tmp is not None:
            tmp.cleanup()
        print("all stopped; nothing left running", flush=True)
