"""The status and build pages in a real headless Chromium (Debian's `chromium`) against a running gate and web:
the status page renders a queued change with its jobs (and a screenshot is taken), and the build page's log links
resolve to the archived logs."""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from tests.functional.gate_harness import wait_for
from tests.functional.test_web_gate import GateWeb, gate_web  # noqa: F401 (the fixture)
from tests.http import get

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium)")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,900"]


def chromium(tmp: Path, url: str, *extra: str) -> str:
    """Run headless Chromium on `url` with a fresh profile; returns its stdout (the DOM, with --dump-dom)."""
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    proc = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=4000", *extra,
                           url], capture_output=True, text=True, timeout=90, cwd=tmp)
    assert proc.returncode == 0, f"chromium failed on {url}: {proc.stderr[-2000:]}"
    return proc.stdout


def test_status_page_shows_the_queued_change_with_its_jobs_and_build_page_links_to_logs(
        gate_web: GateWeb, tmp_path) -> None:  # noqa: F811 (the fixture imported above)
    gate, web = gate_web.gate, gate_web.web
    a = gate.change("org/a", subject="Teach the frobnicator to count")
    gate.approve(a)
    held = wait_for(lambda: gate.executor.held() if len(gate.executor.held()) == 2 else None, 30,
                    "both gate builds to start")
    unit = next(r for r in held if r.job == "unit")
    archive = gate_web.logs / unit.id[:2] / unit.id  # where the test executor's log URL points
    (archive / "logs").mkdir(parents=True)
    (archive / "job-output.txt").write_text("unit: 12 tests passed\n")
    (archive / "logs" / "tox.log").write_text("py311: commands succeeded\n")
    gate.executor.release("unit")
    wait_for(lambda: any(j["result"] == "SUCCESS" for i in gate_web.items("gate") for j in i["jobs"]), 30,
             "the unit result in the status")

    shots = tmp_path / "shots"
    shots.mkdir()
    dom = chromium(shots, f"{web.url}/", "--dump-dom")
    assert 'data-pipeline="gate"' in dom and 'data-change="1,1"' in dom
    assert "Teach the frobnicator to count" in dom and "org/a" in dom
    assert 'data-job="unit"' in dom and 'data-job="integration"' in dom
    assert f'href="/build/{unit.id}"' in dom and "SUCCESS" in dom
    chromium(shots, f"{web.url}/", f"--screenshot={shots / 'status.png'}")
    png = (shots / "status.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000

    dom = chromium(shots, f"{web.url}/build/{unit.id}", "--dump-dom")
    assert f"build {unit.id}" in dom and "SUCCESS" in dom
    for name, content in (("job-output.txt", b"unit: 12 tests passed\n"), ("logs/tox.log", b"py311: commands "
                                                                                          b"succeeded\n")):
        link = f"{web.url}/logs/{unit.id[:2]}/{unit.id}/{name}"
        assert f'href="{link}"' in dom
        assert get(link)[:2] == (200, content)


def test_build_page_follows_the_live_console_as_it_is_written(zk, tmp_path) -> None:
    from tests.functional.test_web import LiveConsole, start_web

    web = start_web(zk, tmp_path)
    live = LiveConsole(zk, tmp_path)
    registry, console = live.registry, live.console

    def write_while_the_browser_watches() -> None:
        wait_for(lambda: web.relays, 60, "the browser to open the console")
        console.line("written while the browser watches")
        console.close()
        registry.finish("build-devstack-a")

    writer = threading.Thread(target=write_while_the_browser_watches, daemon=True)
    try:
        console.line("stack.sh: starting")
        writer.start()
        dom = chromium(tmp_path, f"{web.url}/build/build-devstack-a", "--dump-dom")
        writer.join(10)
        assert "live console" in dom and 'data-ended="true"' in dom
        text = dom[dom.index('class="console"'):]
        assert text.index("| stack.sh: starting") < text.index("| written while the browser watches") < \
            text.index("[console ended]")
    finally:
        live.stop()
        web.stop()
        web.history.close()
