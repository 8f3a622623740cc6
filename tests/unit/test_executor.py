"""Executor pieces that need no node: quoting, masking, devstack config, log names, log store paths."""

from __future__ import annotations

import os
import subprocess

import pytest

from gatekeeper.executor import devstack, logs
from gatekeeper.executor.build import hold_reason, step_dir
from gatekeeper.executor.logs import LogStore
from gatekeeper.executor.masking import MASK, Masker, secrets_from_vars
from gatekeeper.executor.remote import env_exports, step_command
from gatekeeper.zk.builds import BuildRequest

NASTY = "$(touch pwned) `touch pwned` 'single' \"double\" \\ \nsecond line; rm -rf /"


def sh(script: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(["/bin/sh", "-c", script], cwd=cwd, capture_output=True, text=True)


def test_localrc_values_are_data_when_sourced(tmp_path):
    text = devstack.render_localrc({"ADMIN_PASSWORD": NASTY, "ENABLED": True, "COUNT": 3})
    (tmp_path / "localrc").write_text(text)
    out = sh('. ./localrc; printf "%s|%s|%s" "$ADMIN_PASSWORD" "$ENABLED" "$COUNT"', tmp_path)
    assert out.stdout == f"{NASTY}|True|3"
    assert not (tmp_path / "pwned").exists()


def test_localrc_refuses_a_name_that_is_not_a_shell_variable():
    with pytest.raises(ValueError, match="'A;B' is not a valid shell variable name"):
        devstack.render_localrc({"A;B": 1})


def test_local_conf_is_written_only_when_the_job_has_one():
    assert devstack.config_files({"A": 1}) == {"localrc": "A=1\n"}
    files = devstack.config_files({}, "[[post-config|$NOVA_CONF]]\n[DEFAULT]\ndebug = True\n")
    assert files == {"local.conf": "[[post-config|$NOVA_CONF]]\n[DEFAULT]\ndebug = True\n"}


def test_step_command_runs_the_step_in_its_own_session_with_quoted_environment(tmp_path):
    command = step_command('printf "%s\\n" "$V"; ps -o sid= -p $$; ps -o pgid= -p $$', str(tmp_path), {"V": NASTY})
    out = sh(command, tmp_path).stdout.splitlines()
    pgid = out[0].removeprefix("GKPGID ")
    assert out[1:3] == NASTY.split("\n")
    assert [x.strip() for x in out[3:]] == [pgid, pgid]  # session and process group of their own
    assert not (tmp_path / "pwned").exists()


def test_environment_names_must_be_identifiers():
    with pytest.raises(ValueError, match="not a valid shell identifier"):
        env_exports({"$(x)": 1})


def test_masker_hides_every_secret_including_overlapping_ones():
    masker = Masker(secrets_from_vars({"ADMIN_PASSWORD": "hunter22", "SERVICE_TOKEN": "hunter22xyz",
                                       "PLAIN": "visible", "DB_PASSWORD": "ab"}))
    assert masker.text("pw hunter22xyz and hunter22, visible") == f"pw {MASK} and {MASK}, visible"
    assert masker.data(b"x=hunter22\n") == f"x={MASK}\n".encode()
    assert masker.text("ab is too short to mask") == "ab is too short to mask"


def test_collect_patterns_expand_as_globs_but_never_execute(tmp_path):
    (tmp_path / "logs").mkdir()
    for name in ("screen-n-api.log", "screen-key.log", "other.txt", "$(touch pwned).log"):
        (tmp_path / "logs" / name).write_text("x\n")
    cmd = logs.collect_command(["logs/screen-*.log", "logs/$(touch pwned2)*", "logs/missing-*"])
    listing = sh(cmd + " | tar -tf -", tmp_path).stdout.split()
    assert sorted(listing) == ["logs/screen-key.log", "logs/screen-n-api.log"]
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()
    assert logs.shell_glob("~/a b/*.log") == "\"$HOME\"/'a b/'*.log"


def test_collected_files_are_flattened_and_renamed():
    taken: set[str] = {"console.txt"}
    names = [logs.archive_name(m, taken) for m in
             ("opt/stack/logs/screen-n-api.log", "var/log/syslog", "a/x.log", "b/x.log", "console.txt")]
    assert names == ["screen-n-api.txt", "syslog", "x.txt", "b-x.txt", "2-console.txt"]


def test_logs_are_masked_and_large_ones_compressed_in_the_store_after_archiving(tmp_path):
    import gzip

    masker = Masker(["s3cret"])
    build = tmp_path / "build"
    build.mkdir()
    assert logs.store_file(b"s3cret small\n", str(build), "a.txt", masker) == "a.txt"
    big = b"line with s3cret\n" * 100
    logs.store_file(big, str(build), "b.txt", masker)
    logs.write_index(str(build), "t")
    store = LogStore(str(tmp_path / "store"), "http://logs.example.com", compress_over=100)
    assert store.archive(str(build), "01/1/1/check/job/b1") == "http://logs.example.com/01/1/1/check/job/b1/"
    store.compress_later("01/1/1/check/job/b1", "t").result()
    store.close()
    archived = tmp_path / "store" / "01/1/1/check/job/b1"
    assert sorted(os.listdir(archived)) == ["a.txt", "b.txt.gz", "index.html"]
    assert (archived / "a.txt").read_bytes() == f"{MASK} small\n".encode()
    assert gzip.decompress((archived / "b.txt.gz").read_bytes()) == big.replace(b"s3cret", MASK.encode())
    assert 'href="b.txt.gz"' in (archived / "index.html").read_text()


def test_log_store_path_is_per_change_patchset_pipeline_job_and_build():
    path = logs.LogStore.build_path(1234, 2, "gate", "devstack", "5f3c0a1b2c3d4e5f")
    assert path == "34/1234/2/gate/devstack/5f3c0a1b2c3d"
    assert logs.LogStore.build_path(None, None, "periodic", "../x", "b1") == "periodic/periodic/x/b1"


def test_index_lists_files_with_escaped_names(tmp_path):
    (tmp_path / "console.txt").write_text("hi\n")
    (tmp_path / "<b>.txt").write_text("x\n")
    page = open(logs.write_index(str(tmp_path), "devstack 1,1")).read()
    assert '<a href="console.txt">console.txt</a>' in page and "&lt;b&gt;.txt" in page and "<b>.txt" not in page


def test_steps_of_a_devstack_job_run_in_devstack_and_others_in_the_changed_project():
    projects = ["openstack/nova", "openstack-dev/devstack"]
    ds = BuildRequest(change={"project": "openstack/nova"}, params={"devstack": {"localrc": {"A": 1}}})
    plain = BuildRequest(change={"project": "openstack/nova"}, params={})
    assert step_dir(ds, projects) == "openstack-dev/devstack"
    assert step_dir(plain, projects) == "openstack/nova"
    assert hold_reason(BuildRequest(id="b1", job="devstack", pipeline="gate",
                                    change={"number": 5, "patchset": 2}), "FAILURE") == \
        "build b1: devstack for 5,2 in gate ended FAILURE"
