"""Operator commands given bad input, run as operators run them (a process of their own): a sentence naming the
argument or the place and a consistent exit code (2 usage, 1 failure, 3 config), never a traceback; and with
ZooKeeper unreachable, every ZooKeeper command gives up within seconds, naming the hosts."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatekeeper.child_process import start_tied
from gatekeeper.cmd import main
from gatekeeper.zk.client import ZKClient

REPO = Path(__file__).resolve().parents[2]


def start(*argv: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return start_tied([sys.executable, "-m", "gatekeeper.cmd", *argv], stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE, text=True, cwd=REPO, env={**os.environ, **(env or {})})


def run_all(commands: list[tuple[str, ...]], env: dict[str, str] | None = None,
            timeout: float = 120) -> list[tuple[int, str, str, float]]:
    """Run every command at once (they mostly wait); (exit code, stdout, stderr, seconds) for each, in order."""
    began = time.monotonic()
    procs = [start(*argv, env=env) for argv in commands]
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=timeout)
        out.append((proc.returncode, stdout, stderr, time.monotonic() - began))
    return out


@pytest.fixture
def no_config(tmp_path) -> dict[str, str]:
    """An environment whose config cannot reach anything real: no file, ZooKeeper and web on a closed port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    return {"GATEKEEPER_CONFIG": "", "GATEKEEPER_URL": "", "GATEKEEPER_ZOOKEEPER_HOSTS": f"127.0.0.1:{port}",
            "GATEKEEPER_ZOOKEEPER_CHROOT": "/gatekeeper", "GATEKEEPER_HISTORY_URL": f"sqlite:///{tmp_path}/h.sqlite"}


BAD_ARGUMENTS = [
    (("hold", "../../zookeeper", "--reason", "x"), 'argument node: "../../zookeeper" is not a node id'),
    (("hold", "zookeeper", "--reason", "x"), 'argument node: "zookeeper" is not a node id'),
    (("release", "a/b"), 'argument node: "a/b" is not a node id'),
    (("delete-node", ".."), 'argument node: ".." is not a node id'),
    (("hold", "0123abcd", "--reason", "x", "--hours", "nan"), 'argument --hours: "nan" is not a number above zero'),
    (("hold", "0123abcd", "--reason", " "), "argument --reason: must not be empty"),
    (("autohold", "add", "--change", "(("),
     'argument --change: "((" is not a regular expression: missing ), unterminated subpattern at position 1'),
    (("autohold", "add", "--count", "0"), "argument --count: 0 is not at least 1"),
    (("autohold", "add", "--hours", "-3"), 'argument --hours: "-3" is not a number above zero'),
    (("autohold", "delete", "--id", "nope"), 'argument --id: "nope" is not an autohold id'),
    (("autohold", "delete"), "gatekeeper autohold delete: --id is required"),
    (("autohold", "add"), "gatekeeper autohold add: --project and --reason are required"),
    (("autohold", "add", "--project", "nova"), "gatekeeper autohold add: --project and --reason are required"),
    (("autohold", "add", "--project", "../../x y", "--reason", "r"),
     "gatekeeper autohold add: \"../../x y\" is no project name: it has a '..' segment"),
    (("enqueue", "--pipeline", "gate", "--change", "abc"), 'argument --change: "abc" is not a change'),
    (("dequeue", "--pipeline", "gate", "--change", "5"), 'argument --change: "5" is not a change'),
    (("promote", "--pipeline", "gate", "--changes", "1,1", "2;rm"), 'argument --changes: "2;rm" is not a change'),
    (("reload", "--timeout", "-1"), 'argument --timeout: "-1" is not a number above zero'),
    (("build", "../../etc"), 'argument BUILD: "../../etc" is not a build id'),
    (("builds", "--limit", "-5"), "argument --limit: -5 is not at least 1"),
    (("recheck", "5,x"), 'argument N[,P]: "5,x" is not a change'),
    (("status", "--change", "abc"), 'argument --change: "abc" is not a change'),
    (("status", "--url", "notaurl"), 'error: --url: "notaurl" is not an http:// or https:// URL of the web server'),
    (("status", "--url", "http://[::1"), 'error: --url: "http://[::1" is not a URL (Invalid IPv6 URL)'),
    (("zookeeper", "status", "--port", "70000"), "argument --port: 70000 is not a TCP port (0 to 65535)"),
    (("web", "--port", "-1"), "argument --port: -1 is not a TCP port (0 to 65535)"),
    (("executor", "--console-port", "99999"), "argument --console-port: 99999 is not a TCP port (0 to 65535)"),
    (("all-in-one", "--web-port", "99999"), "argument --web-port: 99999 is not a TCP port (0 to 65535)"),
    (("merger", "--workers", "-5"), "argument --workers: -5 is not at least 1"),
    (("executor", "--concurrency", "0"), "argument --concurrency: 0 is not at least 1"),
    (("cloud-sim", "--max-instances", "-5"), "argument --max-instances: -5 is below 0"),
    (("cloud-sim", "--spare-hosts", "-1"), "argument --spare-hosts: -1 is below 0"),
    (("gerrit-events", "--count", "-1"), "argument --count: -1 is below 0"),
    (("reload", "--timeout", "1e308"), 'argument --timeout: "1e308" seconds is longer than a command waits'),
    (("enqueue", "--pipeline", "gate", "--change", "1,1", "--timeout", "1e10"),
     'argument --timeout: "1e10" seconds is longer than a command waits'),
    (("history", "--url", "garbage", "migrate"), '--url: "garbage" is not a database URL SQLAlchemy can use'),
    (("hold", "0123abcd", "--reason", "x", "--hours", "1e308"),
     'argument --hours: "1e308" hours is longer than a hold may last (at most 720 hours, 30 days)'),
    (("autohold", "add", "--hours", "721"), 'argument --hours: "721" hours is longer than a hold may last'),
    (("hold-access", "0123abcd", "--hours", "inf"), 'argument --hours: "inf" is not a number above zero'),
    (("enqueue", "--pipeline", "", "--change", "1,1"), "argument --pipeline: must not be empty"),
    (("promote", "--pipeline", "g" * 300, "--changes", "1,1"),
     "argument --pipeline: a name of 300 characters is not a pipeline (at most 255)"),
]


@pytest.mark.parametrize(("argv", "expected"), BAD_ARGUMENTS, ids=[" ".join(a) for a, _ in BAD_ARGUMENTS])
def test_bad_arguments_are_usage_errors_naming_the_argument(argv, expected, no_config, monkeypatch, capsys):
    for name, value in no_config.items():
        monkeypatch.setenv(name, value)
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    stderr = capsys.readouterr().err
    assert expected in stderr
    assert code == 2


def test_a_promote_of_more_changes_than_one_takes_is_a_usage_error(no_config, monkeypatch, capsys):
    for name, value in no_config.items():
        monkeypatch.setenv(name, value)
    code = main(["promote", "--pipeline", "gate", "--changes", *["1,1"] * 501])
    assert code == 2
    assert capsys.readouterr().err == (
        'error: field "changes": 501 changes are more than one promote takes (at most 500)\n')


def test_the_cases_that_printed_tracebacks_or_were_accepted_end_with_usage_errors(no_config):
    cases = [BAD_ARGUMENTS[0], BAD_ARGUMENTS[6], BAD_ARGUMENTS[9]]  # hold ../../zookeeper, ((, --id nope
    results = run_all([argv for argv, _ in cases], env=no_config)
    for (argv, expected), (code, _, stderr, _) in zip(cases, results, strict=True):
        assert "Traceback" not in stderr, (argv, stderr)
        assert expected in stderr, (argv, stderr)
        assert code == 2, (argv, code, stderr)


ZOOKEEPER_COMMANDS = [
    ("nodes",), ("nodes", "--detail"), ("images",), ("requests",), ("providers",), ("providers", "info", "prov-a"),
    ("providers", "erase", "prov-a", "--force"), ("drain", "prov-a"),
    ("hold", "0123456789ab", "--reason", "look"), ("release", "0123456789ab"), ("delete-node", "0123456789ab"),
    ("autohold", "list"), ("autohold", "add", "--project", "nova", "--reason", "x"),
    ("autohold", "delete", "--id", "hold-0000000001"),
    ("enqueue", "--pipeline", "gate", "--change", "1,1"), ("dequeue", "--pipeline", "gate", "--change", "1,1"),
    ("promote", "--pipeline", "gate", "--changes", "1,1"), ("reload",),
]


def test_every_zookeeper_command_fails_fast_when_zookeeper_is_unreachable(no_config):
    hosts = no_config["GATEKEEPER_ZOOKEEPER_HOSTS"]
    results = run_all(ZOOKEEPER_COMMANDS, env=no_config)
    for argv, (code, stdout, stderr, _) in zip(ZOOKEEPER_COMMANDS, results, strict=True):
        assert stderr.strip() == (
            f"cannot reach ZooKeeper at {hosts} within 5 s (last error: socket connection error: Connection "
            "refused); is it running there, and are zookeeper.hosts and its TLS settings right?"), (argv, stderr)
        assert code == 1 and stdout == "", (argv, code, stdout)


def test_an_operator_command_gives_up_on_zookeeper_within_seconds(no_config, monkeypatch, capsys):
    """Timed in-process, so that starting Python on a busy machine does not count: 5 s, not the 30 s after which
    a traceback used to come."""
    for name, value in no_config.items():
        monkeypatch.setenv(name, value)
    began = time.monotonic()
    assert main(["dequeue", "--pipeline", "gate", "--change", "1,1"]) == 1
    assert time.monotonic() - began < 12
    assert "cannot reach ZooKeeper at" in capsys.readouterr().err


def test_a_bad_zookeeper_setting_is_a_config_error(no_config):
    results = run_all([("nodes",), ("autohold", "list")],
                      env={**no_config, "GATEKEEPER_ZOOKEEPER_HOSTS": "zk1:21x81",
                           "GATEKEEPER_ZOOKEEPER_CHROOT": "gatekeeper"})
    assert results[0][0] == 3
    assert results[0][2].strip() == ('zookeeper.hosts "zk1:21x81" is not a list of host:port '
                                     "(Port could not be cast to integer value as '21x81')")
    results = run_all([("nodes",)], env={**no_config, "GATEKEEPER_ZOOKEEPER_CHROOT": "/a/../b"})
    assert results[0][0] == 3
    assert results[0][2].strip() == 'zookeeper.chroot "/a/../b" is not an absolute ZooKeeper path such as /gatekeeper'
    tls = {"GATEKEEPER_ZOOKEEPER_TLS_CA": "/nonexistent/ca.pem", "GATEKEEPER_ZOOKEEPER_TLS_CERT": "/etc/hostname",
           "GATEKEEPER_ZOOKEEPER_TLS_KEY": "/etc/hostname"}
    results = run_all([("nodes",)], env={**no_config, **tls})
    assert results[0][:3] == (3, "", "zookeeper.tls.ca: /nonexistent/ca.pem is not a file this process can read\n")


@pytest.fixture
def zk_config(zk_server, zk_chroot, tmp_path) -> Iterator[dict[str, str]]:
    """The environment of an operator whose config points at the test's ZooKeeper chroot."""
    config = tmp_path / "gatekeeper.yaml"
    config.write_text(f"zookeeper:\n  hosts: {zk_server.hosts}\n  chroot: {zk_chroot}\n")
    yield {"GATEKEEPER_CONFIG": str(config), "GATEKEEPER_URL": ""}
    cleaner = ZKClient(zk_server.hosts).start()
    try:
        cleaner.client.delete(zk_chroot, recursive=True)
    except Exception:
        pass
    finally:
        cleaner.stop()


def test_autohold_delete_of_an_unknown_id_fails_and_a_known_one_is_deleted(zk_config):
    [(code, out, err, _)] = run_all([("autohold", "delete", "--id", "hold-0000000042")], env=zk_config)
    assert (code, out, err.strip()) == (1, "", "no autohold hold-0000000042 (see `gatekeeper autohold list`)")
    [(code, out, err, _)] = run_all([("autohold", "add", "--project", "nova", "--reason", "x", "--change", r"^5,\d+$")],
                                    env=zk_config)
    assert code == 0, err
    ident = out.strip()
    [(code, out, err, _), (listed, listing, _, _)] = run_all([("autohold", "delete", "--id", ident)], env=zk_config) \
        + run_all([("autohold", "list")], env=zk_config)
    assert (code, out.strip()) == (0, f"autohold {ident} deleted"), err
    assert (listed, listing) == (0, "No autohold requests found\n")


def test_an_autohold_for_a_project_the_published_layout_does_not_know_is_refused_as_zuul_does(zk_config, zk_server,
                                                                                              zk_chroot):
    from gatekeeper.config.layout import parse_layout
    from gatekeeper.config.store import publish_layout

    add = ("autohold", "add", "--reason", "debug", "--project")
    [(code, out, err, _)] = run_all([(*add, "org/x")], env=zk_config)
    assert code == 0 and "Traceback" not in err, err  # no layout published yet: nothing to check against
    zk = ZKClient(zk_server.hosts, chroot=zk_chroot).start()
    try:
        publish_layout(zk, parse_layout({"l.yaml": "pipelines:\n  - {name: check, manager: independent}\n"
                                                   "projects:\n  - name: org/a\n"}))
    finally:
        zk.stop()
    [(code, out, err, _), (known, ident, _, _)] = run_all([(*add, "org/x"), (*add, "org/a")], env=zk_config)
    assert (code, out, err.strip()) == (
        1, "", 'gatekeeper autohold add: no project "org/x" in the published layout (did you mean org/a?)')
    assert known == 0 and ident.startswith("hold-")


def test_deleting_an_autohold_releases_the_nodes_it_holds_as_zuul_does(zk_config, zk_server, zk_chroot):
    from gatekeeper.launcher import model
    from gatekeeper.zk.nodes import NodeStore

    zk = ZKClient(zk_server.hosts, chroot=zk_chroot).start()
    try:
        store = NodeStore(zk)
        store.ensure_paths(["debian"])
        held, other = (model.Node(id=i, provider="p", label="debian", state=model.HOLD, hold_reason="r")
                       for i in ("0123456789ab", "ba9876543210"))
        assert store.create_node(held) and store.create_node(other)
        ident = store.add_autohold(model.Autohold(project="nova", reason="debug", held_nodes=[held.id, "00000000dead"]))
        [(code, out, err, _)] = run_all([("autohold", "delete", "--id", ident)], env=zk_config)
        assert (code, out.strip()) == (0, f"autohold {ident} deleted; released the nodes it held: {held.id}"), err
        assert store.read_node(held.id)[0].state == model.USED  # its launcher deletes it now
        assert store.read_node(other.id)[0].state == model.HOLD  # held by something else: left alone
    finally:
        zk.stop()


def test_node_commands_name_a_node_that_does_not_exist(zk_config):
    results = run_all([("hold", "0123456789ab", "--reason", "look"), ("release", "0123456789ab")], env=zk_config)
    for code, out, err, _ in results:
        assert (code, out, err.strip()) == (1, "", "no node 0123456789ab")


def test_local_zookeeper_commands_survive_a_bad_data_dir_and_garbled_state(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["zookeeper", "start", "--data-dir", str(blocker / "zk")]) == 1
    assert capsys.readouterr().err.strip() == f"cannot create the ZooKeeper data dir {blocker / 'zk'}: Not a directory"
    state = tmp_path / "zk"
    state.mkdir()
    (state / "zookeeper.pid").write_text("garbage\n")
    (state / "zookeeper.port").write_bytes(b"\xff")
    assert main(["zookeeper", "status", "--data-dir", str(state)]) == 1
    assert main(["zookeeper", "stop", "--data-dir", str(state)]) == 0
    assert capsys.readouterr().out == "not running\nnot running\n"


def test_scheduler_without_a_gerrit_section_is_a_config_error(no_config, monkeypatch, capsys):
    for name, value in no_config.items():
        monkeypatch.setenv(name, value)
    assert main(["scheduler", "-l", str(REPO / "layouts")]) == 3
    assert capsys.readouterr().err.strip() == ("<defaults>: the scheduler needs a gerrit section with host and user "
                                               "(the Gerrit it gates)")


def test_scheduler_with_a_layout_of_no_pipelines_is_refused_before_it_starts(no_config, monkeypatch, capsys,
                                                                             tmp_path):
    """A layout of node providers only (a launcher's) would leave a scheduler gating nothing: refused at start as
    a reload to it is, naming the file, before anything connects."""
    layout = tmp_path / "nodes.yaml"
    layout.write_text("nodepool:\n  labels: [{name: small}]\n  providers:\n    - {name: c, driver: openstack, "
                      "cloud: c, images: [{name: i}], pools: [{name: p, labels: [{name: small, image: i}]}]}\n")
    for name, value in {**no_config, "GATEKEEPER_GERRIT_HOST": "127.0.0.1", "GATEKEEPER_GERRIT_USER": "ci"}.items():
        monkeypatch.setenv(name, value)
    assert main(["scheduler", "-l", str(layout)]) == 3
    assert capsys.readouterr().err.strip().startswith(f"{layout}: the layout defines no pipelines, so a scheduler "
                                                      "would gate nothing")


def test_zookeeper_commands_say_when_zookeeper_is_not_installed(no_config, tmp_path):
    env = {**no_config, "PATH": str(tmp_path / "no-java-here")}
    results = run_all([("bootstrap", "-l", str(REPO / "layouts")),
                       ("zookeeper", "start", "--data-dir", str(tmp_path / "zk"))], env=env)
    expected = "ZooKeeper is not installed: run tools/install-deps (apt-get install zookeeper) first"
    assert results[0][:3] == (1, "layout OK: 2 pipelines, 1 queues, 8 jobs, 8 projects, 2 node labels, 2 providers\n",
                              f"cannot start a local ZooKeeper: {expected}\n")
    assert results[1][0] == 1 and results[1][2] == f"{expected}\n"


def test_zookeeper_stop_leaves_alone_a_process_that_reuses_a_stale_pid(tmp_path, capsys):
    state = tmp_path / "zk"
    state.mkdir()
    other = start_tied(["sleep", "300"])
    try:
        (state / "zookeeper.pid").write_text(str(other.pid))
        (state / "zookeeper.port").write_text("2181")
        assert main(["zookeeper", "stop", "--data-dir", str(state)]) == 0
        assert main(["zookeeper", "status", "--data-dir", str(state)]) == 1
        out, err = capsys.readouterr()
        assert out == "not running\nnot running\n"
        assert f"names pid {other.pid}, which is not a ZooKeeper server (a stale PID file)" in err
        assert other.poll() is None  # still alive
    finally:
        other.kill()
        other.wait()


def test_zookeeper_start_status_stop_of_a_real_server(tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = str(tmp_path / "zk")
    assert main(["zookeeper", "start", "--data-dir", data, "--port", str(port)]) == 0
    try:
        assert main(["zookeeper", "status", "--data-dir", data]) == 0
        assert "running: pid " in capsys.readouterr().out
    finally:
        assert main(["zookeeper", "stop", "--data-dir", data]) == 0
    assert capsys.readouterr().out.startswith("stopped pid ")
    assert main(["zookeeper", "status", "--data-dir", data]) == 1


def test_a_reader_that_goes_away_ends_a_command_quietly(tmp_path):
    """`gatekeeper nodes | head -1`: the pipe closes before the command writes; no traceback, as other tools."""
    config = tmp_path / "gatekeeper.yaml"
    config.write_text(f"layout: {REPO / 'layouts'}\n")
    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written
    try:
        proc = subprocess.run([sys.executable, "-m", "gatekeeper.cmd", "validate", "-c", str(config)], cwd=REPO,
                              stdout=write, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write)
    assert proc.returncode == 1 and proc.stderr == ""


def test_a_port_in_use_is_one_sentence_not_a_traceback():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (code, _, err, _), = run_all([("gerrit-sim", "--port", str(port), "--data-dir", "/nonexistent-gk/x")])
    assert code == 1 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("gatekeeper gerrit-sim: ")


def test_zookeeper_start_on_a_port_another_server_holds_fails_and_says_so(zk_server, tmp_path, capsys):
    # the other server would answer `ruok` for ours, which exits at once: not "running"
    port = zk_server.hosts.rsplit(":", 1)[1]
    assert main(["zookeeper", "start", "--port", port, "--data-dir", str(tmp_path / "zk")]) == 1
    assert capsys.readouterr().err.strip() == (
        f"cannot start ZooKeeper on 127.0.0.1:{port}: the port is in use by another process")
