"""`gatekeeper`: one entry point, a subcommand per service and per operator action.

This package is a composition root (the all-in-one is the other): where services, drivers and stores are wired
together. Each command group has its module here (`gatekeeper.cmd.scheduler`, `gatekeeper.cmd.launcher`, ...),
which defines `register(subparsers)`: add a parser and `set_defaults(func=handler)`; the handler takes the parsed
args and returns an exit code. `args` holds the argument types that refuse bad input as usage errors, and
`web_client` the web API client of the operator commands.
"""

from __future__ import annotations

import argparse
import faulthandler
import importlib
import io
import logging
import os
import signal
import sys

from kazoo.exceptions import ConnectionLoss, NoAuthError, SessionExpiredError

from gatekeeper import __version__
from gatekeeper.config.layout import load_layout
from gatekeeper.config.settings import load_service_config
from gatekeeper.config.yamlfile import ConfigErrors
from gatekeeper.zk.client import ZooKeeperError

COMMAND_MODULES = (
    "gatekeeper.cmd.zookeeper",
    "gatekeeper.cmd.gerrit_sim",
    "gatekeeper.cmd.gerrit",
    "gatekeeper.cmd.scheduler",
    "gatekeeper.cmd.merger",
    "gatekeeper.cmd.cloud_sim",
    "gatekeeper.cmd.launcher",
    "gatekeeper.cmd.providers",
    "gatekeeper.cmd.executor",
    "gatekeeper.cmd.web",
    "gatekeeper.cmd.history",
    "gatekeeper.cmd.allinone",
    "gatekeeper.cmd.operator",
)

# Long-running services log INFO to stderr by default (what journald and `docker logs` collect); commands an
# operator runs in a terminal stay at WARNING so that their own output is what they see.
SERVICE_COMMANDS = frozenset({"scheduler", "merger", "launcher", "executor", "web", "history", "zookeeper",
                              "gerrit-sim", "cloud-sim"})
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JOURNAL_LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"  # journald stamps each line itself

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """The options every service and operator command shares."""
    parser.add_argument("-c", "--config", metavar="FILE", help="service config (default: $GATEKEEPER_CONFIG or none)")


def cmd_validate(args: argparse.Namespace) -> int:
    what = "the service config"
    try:
        config = load_service_config(args.config)
        what = "the layout"
        layout = load_layout(args.layout or config.layout_path, config.connections)
    except ConfigErrors as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        count = len(exc.errors)
        print(f"{count} error{'s' if count != 1 else ''}: {what} is not valid", file=sys.stderr)
        return EXIT_CONFIG
    print(f"OK: {layout.summary()} ({len(layout.files)} file{'s' if len(layout.files) != 1 else ''})")
    return EXIT_OK


def cmd_bootstrap(args: argparse.Namespace) -> int:
    """Start a local ZooKeeper, validate the layout and publish it there: the first step of a gatekeeper host."""
    import tempfile

    from gatekeeper.config.store import publish_layout, read_layout
    from gatekeeper.zk.client import ZKClient
    from gatekeeper.zk.components import Component, list_components
    from gatekeeper.zk.server import LocalZooKeeper

    config = load_service_config(args.config)
    layout = load_layout(args.layout or config.layout_path, config.connections)
    print(f"layout OK: {layout.summary()}")
    with tempfile.TemporaryDirectory(prefix="gatekeeper-") as tmp:
        server = LocalZooKeeper(data_dir=tmp, force_sync=False)  # thrown away with the check
        try:
            server.start()
        except RuntimeError as exc:  # not installed, exited at once, or never answered
            print(f"cannot start a local ZooKeeper: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        try:
            print(f"ZooKeeper up on {server.hosts} (pid {server.process.pid})")
            zk = ZKClient(server.hosts, chroot="/gatekeeper").start()
            try:
                me = Component(zk, "bootstrap")
                me.register()
                publish_layout(zk, layout)
                back = read_layout(zk, config.connections)
                who = ", ".join(f"{c.kind}@{c.hostname}" for c in list_components(zk))
                print(f"layout published to ZooKeeper and read back: {back.summary()}; registered: {who}")
                me.unregister()
            finally:
                zk.stop()
        finally:
            server.stop()
    print("ZooKeeper stopped; nothing left running")
    return EXIT_OK


def configure_logging(command: str | None, verbose: int = 0, quiet: int = 0) -> int:
    """Log to stderr at INFO for a service, WARNING for other commands; each -v is one level more, each -q one
    less (DEBUG at most, CRITICAL at least). Returns the level."""
    base = logging.INFO if command in SERVICE_COMMANDS else logging.WARNING
    level = min(max(base + 10 * (quiet - verbose), logging.DEBUG), logging.CRITICAL)
    fmt = JOURNAL_LOG_FORMAT if os.environ.get("JOURNAL_STREAM") else LOG_FORMAT
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr)
    return level


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gatekeeper", description="A project gating system: speculative gate, node pool and remote jobs."
    )
    parser.add_argument("--version", action="version", version=f"gatekeeper {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging: services log INFO by default, -v adds DEBUG; other commands log "
                             "WARNING, -v adds INFO, -vv DEBUG")
    parser.add_argument("-q", "--quiet", action="count", default=0,
                        help="less logging: -q logs only warnings and errors (services), -qq only errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    validate = sub.add_parser("validate", help="check the service config and the layout, listing every error")
    add_config_args(validate)
    validate.add_argument("-l", "--layout", metavar="DIR", help="layout file or directory (default: from config)")
    validate.set_defaults(func=cmd_validate)

    bootstrap = sub.add_parser("bootstrap", help="start a local ZooKeeper, validate and publish the layout, stop")
    add_config_args(bootstrap)
    bootstrap.add_argument("-l", "--layout", metavar="DIR", help="layout file or directory (default: from config)")
    bootstrap.set_defaults(func=cmd_bootstrap)

    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(sub)
    return parser


def _open_standard_fds() -> None:
    """Put /dev/null on a standard descriptor (0, 1, 2) the process was started without (a cron job's, a daemon's
    child's): else the first socket or file it opens takes that number, and what is written to "stderr" goes there,
    and Python's print(file=None) writes a missing stderr's errors to stdout."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            os.open(os.devnull, os.O_RDWR)  # the lowest free descriptor: this one
    if sys.stderr is None:
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115 (for the life of the process)
    if sys.stdout is None:
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115


def main(argv: list[str] | None = None) -> int:
    _open_standard_fds()
    # As Zuul's services: SIGUSR2 writes every thread's stack to stderr (a service that seems stuck says where).
    if hasattr(signal, "SIGUSR2"):
        try:
            faulthandler.register(signal.SIGUSR2, all_threads=True)
        except (AttributeError, ValueError, RuntimeError, io.UnsupportedOperation):  # stderr is no file, or none
            pass
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(getattr(args, "command", None), args.verbose, args.quiet)
    if getattr(args, "command", None) in SERVICE_COMMANDS:
        # a service that dies of a fatal signal (SIGSEGV, SIGABRT, ...) says so, with every thread's stack, in its log
        try:
            faulthandler.enable(all_threads=True)
        except (AttributeError, ValueError, RuntimeError, io.UnsupportedOperation):  # (as above)
            pass
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    if hasattr(args, "config") and args.config is None:
        args.config = os.environ.get("GATEKEEPER_CONFIG") or None
    try:
        return int(args.func(args) or 0)
    except ConfigErrors as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        return EXIT_CONFIG
    except ZooKeeperError as exc:
        print(exc, file=sys.stderr)
        return exc.exit_code
    except NoAuthError:
        print("ZooKeeper refused access to gatekeeper's data: zookeeper.auth is missing or its password is wrong "
              "(set it in the config or as GATEKEEPER_ZOOKEEPER_AUTH_PASSWORD)", file=sys.stderr)
        return EXIT_FAILURE
    except (ConnectionLoss, SessionExpiredError) as exc:
        print(f"lost the connection to ZooKeeper before the command finished ({type(exc).__name__}); "
              "it may have been applied or not: check, then run it again", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader went away (`gatekeeper nodes | head -1`): stop without a word, as other Unix tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILURE
    except Exception as exc:
        # The last resort: one sentence, not a traceback (it is in the log with --verbose, or from a service that
        # failed while running, where bad input at its start, such as a port in use, is one sentence too).
        command = getattr(args, "command", None) or "gatekeeper"
        bad_input = isinstance(exc, (OSError, ValueError, OverflowError))
        if command in SERVICE_COMMANDS and not bad_input:
            logging.getLogger(f"gatekeeper.{command}").exception("%s stopped on an unexpected error", command)
        else:
            logging.getLogger("gatekeeper.cmd").debug("%s failed", command, exc_info=True)
        print(f"gatekeeper {command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
