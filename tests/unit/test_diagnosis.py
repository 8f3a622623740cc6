"""The diagnosis of a console, in-process: summaries of tracebacks and plain errors, and a large console read from
its end."""

from __future__ import annotations

from gatekeeper.executor.diagnosis import error_tail, read_console, summarize


def test_python_traceback_keeps_its_last_frame_and_exception():
    chunk = ["Traceback (most recent call last):", '  File "a.py", line 1, in <module>', "    main()",
             '  File "b.py", line 9, in main', "    raise KeyError('flavor')", "KeyError: 'flavor'"]
    assert error_tail(chunk) == ['File "b.py", line 9, in main', "raise KeyError('flavor')", "KeyError: 'flavor'"]


def test_a_large_console_is_read_from_its_end(tmp_path):
    path = tmp_path / "console.txt"
    with open(path, "w") as f:
        for i in range(200_000):
            f.write(f"2026-01-01 00:00:00.000000 | noise line {i}\n")
        f.write("2026-01-01 00:00:00.000000 | $ ./run-tests.sh\n")
        f.write("2026-01-01 00:00:00.000000 | FAILED tests/test_api.py::test_boot - assert 500 == 202\n")
        f.write("2026-01-01 00:00:00.000000 | ./run-tests.sh exited 1 after 3.0s\n")
    lines = read_console(str(path), limit=4096)
    assert len(lines) < 100 and lines[-1] == "./run-tests.sh exited 1 after 3.0s"
    assert all(line.startswith(("noise line ", "$ ", "FAILED ", "./run-tests")) for line in lines)
    assert summarize(lines, "FAILURE", "./run-tests.sh exited 1").splitlines() == [
        "./run-tests.sh exited 1", "FAILED tests/test_api.py::test_boot - assert 500 == 202"]
