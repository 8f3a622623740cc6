"""`gatekeeper cloud-sim`: run simulated OpenStack clouds (servers are real SSH hosts) until interrupted."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from gatekeeper.cmd import args as types
from gatekeeper.cmd.signals import wait_until_set


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cloud-sim", help="run simulated OpenStack clouds whose servers are real SSH hosts")
    p.add_argument("--cloud", action="append", dest="clouds", metavar="NAME",
                   help="a cloud to simulate (repeat for several; default: one named 'sim')")
    p.add_argument("--clouds-yaml", metavar="FILE", help="write a clouds.yaml naming the clouds here")
    p.add_argument("--backend", choices=("auto", "netns", "loopback", "none"), default="auto",
                   help="hosts: netns (root), loopback sshd, or none (addresses only); default auto")
    p.add_argument("--max-instances", type=types.count, default=100, help="each cloud's instance quota (default 100)")
    p.add_argument("--port", type=types.port, default=0, help="first HTTP port (default: free ports)")
    p.add_argument("--spare-hosts", type=types.count, default=0, metavar="N",
                   help="keep N blank hosts started ahead, shared by the clouds, so that a boot only binds one to its "
                        "server (default 0: each boot starts its host); also POST {url}/sim/spare-hosts {\"count\": N}")
    p.add_argument("--work-dir", metavar="DIR", help="where hosts keep their files (default: a temp dir)")
    p.add_argument("--config", metavar="FILE",
                   help="YAML with the images (names) and flavors (id, name, vcpus, ram, disk, extra_specs) every "
                        "cloud offers (default: debian-12, ubuntu-22.04, ubuntu-24.04; small/medium/large, m1.*)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gatekeeper.sim.openstack.extras import SimConfig, SimConfigError
    from gatekeeper.sim.openstack.sim import CloudSim
    from gatekeeper.sim.openstack.spares import SparePool

    try:
        config = SimConfig.load(args.config) if args.config else SimConfig()
    except SimConfigError as e:
        print(f"gatekeeper cloud-sim: {e}", file=sys.stderr)
        return 2
    names = args.clouds or ["sim"]
    if args.spare_hosts and args.backend == "none":
        print("gatekeeper cloud-sim: --spare-hosts needs hosts (not --backend none)", file=sys.stderr)
        return 2
    if args.spare_hosts > SparePool.MAX:
        print(f"gatekeeper cloud-sim: --spare-hosts {args.spare_hosts}: at most {SparePool.MAX}", file=sys.stderr)
        return 2
    sim = CloudSim(names, backend="auto" if args.backend == "none" else args.backend, workdir=args.work_dir,
                   max_instances=args.max_instances, hosts=args.backend != "none", port=args.port,
                   images=config.images, flavors=config.flavors, spare_hosts=args.spare_hosts)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        if args.clouds_yaml:
            sim.write_clouds_yaml(args.clouds_yaml)
        info = {"clouds_yaml": args.clouds_yaml or sim.clouds_yaml,
                "clouds": {n: s.url for n, s in sim.servers.items()},
                "backend": type(sim.backend).__name__ if sim.backend else "none"}
        print(json.dumps(info), flush=True)
        print("faults: POST {url}/sim/faults with JSON, e.g. {\"boot_errors\": 1}; state: GET {url}/sim/state; "
              "spare hosts: GET or POST {url}/sim/spare-hosts, e.g. {\"count\": 10}", file=sys.stderr, flush=True)
        wait_until_set(stop)
    finally:
        sim.stop()
    return 0
