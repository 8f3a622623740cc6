"""Fault controls for tests: cut or pause the event streams, make commands fail, hang, lose their channel or their
answer, refuse connections."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gatekeeper.sim.gerrit.simulator import GerritSimulator


@dataclass
class CommandFault:
    """What happens to the next `times` runs of one command (`review`, `submit`, `query`, ...)."""

    times: int
    hang_s: float = 0.0  # sleep this long first; if the client gave up meanwhile, the command is not applied
    hang_after: bool = False  # run the command first, then hang before answering (the answer gets lost)
    exit_status: int | None = None  # fail with this status instead of running
    drop_after: bool = False  # run the command, then drop the connection before answering ("Channel closed.")
    unanswered: bool = False  # no answer to the exec request, and silence on its connection (see `unanswered()`)
    closed: bool = False  # its channel closed before the exec request's answer, the command not run (`close()`)
    stderr: str = "fatal: internal server error\n"


class Faults:
    """Reached as `sim.faults`. Every control is thread-safe and takes effect immediately."""

    def __init__(self, sim: GerritSimulator) -> None:
        self._sim = sim
        self._lock = threading.Lock()
        self._commands: dict[str, CommandFault] = {}
        self._matching: dict[tuple[str, str], CommandFault] = {}  # (command, argument text) -> persistent fault
        self.refuse_connections = False  # when True, new TCP connections are closed right after accept
        self._resumed = threading.Event()
        self._resumed.set()
        self._answering = threading.Event()
        self._answering.set()

    # -- event streams ----------------------------------------------------------------------------------------
    def cut_streams(self) -> int:
        """Drop every SSH connection that runs stream-events, as a network cut would; returns how many."""
        return self._sim._cut_streams()

    def pause_streams(self) -> None:
        """Hold events in the per-listener buffers (nothing is written) until resume_streams()."""
        self._resumed.clear()

    def resume_streams(self) -> None:
        self._resumed.set()

    def wait_resumed(self, timeout: float) -> bool:
        return self._resumed.wait(timeout)

    @property
    def streams_paused(self) -> bool:
        return not self._resumed.is_set()

    def inject_raw(self, data: bytes | str) -> None:
        """Write raw bytes to every stream listener (malformed-input tests); add the newline yourself."""
        self._sim._broadcast_raw(data.encode() if isinstance(data, str) else data)

    # -- commands ---------------------------------------------------------------------------------------------
    def fail(self, command: str, times: int = 1, exit_status: int = 1,
             stderr: str = "fatal: internal server error\n") -> None:
        """Make the next `times` runs of `command` ("review", "submit", "query", ...) fail."""
        with self._lock:
            self._commands[command] = CommandFault(times, exit_status=exit_status, stderr=stderr)

    def hang(self, command: str, seconds: float, times: int = 1, after: bool = False) -> None:
        """Make the next `times` runs of `command` sleep `seconds` before doing anything (not applied if the
        client gives up meanwhile), or with `after=True` apply it and then sleep before answering."""
        with self._lock:
            self._commands[command] = CommandFault(times, hang_s=seconds, hang_after=after)

    def fail_matching(self, command: str, text: str, exit_status: int = 1,
                      stderr: str = "fatal: internal server error\n") -> None:
        """Make every run of `command` with an argument equal to `text` fail, until clear() (a query about
        one change that keeps failing: `fail_matching("query", "change:5")`)."""
        with self._lock:
            self._matching[(command, text)] = CommandFault(0, exit_status=exit_status, stderr=stderr)

    def matching(self, command: str, args: list[str]) -> CommandFault | None:
        """The persistent fault for this run of `command` with `args`, if any."""
        with self._lock:
            for (name, text), fault in self._matching.items():
                if name == command and text in args:
                    return fault
        return None

    def drop(self, command: str, times: int = 1) -> None:
        """Make the next `times` runs of `command` take effect, then drop the SSH connection without an answer."""
        with self._lock:
            self._commands[command] = CommandFault(times, drop_after=True)

    def unanswered(self, command: str, times: int = 1) -> None:
        """Make the SSH daemon go silent on the connection where the next `times` runs of `command` arrive: their
        exec requests get no answer and nothing more is read or sent on that connection (a wedged daemon, a
        network blackhole) until clear(), which closes it; the command is not run."""
        with self._lock:
            self._commands[command] = CommandFault(times, unanswered=True)
            self._answering.clear()

    def close(self, command: str, times: int = 1) -> None:
        """Make the next `times` runs of `command` close their channel before answering its exec request, without
        running (the client's "Channel closed."); the connection and its other channels go on."""
        with self._lock:
            self._commands[command] = CommandFault(times, closed=True)

    def take_exec_fault(self, names: list[str]) -> CommandFault | None:
        """The fault of an `unanswered()` or `close()` for this exec request (its command's fault `names`), if any
        (consumes one run)."""
        with self._lock:
            name = next((n for n in names if n in self._commands
                         and (self._commands[n].unanswered or self._commands[n].closed)), None)
        return self.take(name) if name is not None else None

    def wait_answering(self, timeout: float) -> bool:
        """Wait up to `timeout` for clear() to end the silence of `unanswered()` connections."""
        return self._answering.wait(timeout)

    def pending(self, command: str) -> int:
        """How many runs of `command` a fault still waits for (0: it fired, or there is none)."""
        with self._lock:
            fault = self._commands.get(command)
            return fault.times if fault else 0

    def clear(self) -> None:
        """Remove every command fault, resume streams, accept connections."""
        with self._lock:
            self._commands.clear()
            self._matching.clear()
        self.refuse_connections = False
        self.resume_streams()
        self._answering.set()

    def take(self, command: str) -> CommandFault | None:
        """The fault for this run of `command`, if any (consumes one of its `times`)."""
        with self._lock:
            fault = self._commands.get(command)
            if fault is None:
                return None
            fault.times -= 1
            if fault.times <= 0:
                del self._commands[command]
            return fault
