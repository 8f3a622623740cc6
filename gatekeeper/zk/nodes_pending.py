"""A write or read of the node store sent to ZooKeeper and not waited for: its answer comes later. A part of
gatekeeper.zk.nodes."""

from __future__ import annotations

from collections.abc import Callable


class Pending:
    """A request sent to ZooKeeper whose answer is not awaited yet: many are sent before the first answer is
    read (one round trip for all). `result()` waits and returns the answer as the synchronous method would."""

    def __init__(self, answer, interpret: Callable) -> None:
        self._answer = answer
        self._interpret = interpret

    def result(self):
        try:
            raw = self._answer.get()
        except Exception as e:  # kazoo hands a failed request's exception to get()
            return self._interpret(e)
        return self._interpret(raw)

    def on_answer(self, callback: Callable[[Pending], None], now: bool = False) -> None:
        """Call `callback(self)` once the answer is in (on kazoo's completion thread; at once if it is in already;
        a lost connection answers too, with its error): `result()` then returns without waiting. `now`: on kazoo's
        connection thread as the answer is read (one thread switch less), for a callback that neither blocks nor
        sends a ZooKeeper request (see gatekeeper.zk.client.AnswerResult.rawlink_now)."""
        link(self._answer, lambda _answer: callback(self), now)


def link(answer, callback: Callable, now: bool = False) -> None:
    """Call `callback(answer)` once kazoo's `answer` is in: on its completion thread, or (`now`, and the client is
    ours: gatekeeper.zk.client.AnswerResult) on its connection thread as the answer is read."""
    if now and hasattr(answer, "rawlink_now"):
        answer.rawlink_now(callback)
    else:
        answer.rawlink(callback)


def failed(results) -> bool:
    """Whether a transaction's answer has a failed operation."""
    return any(isinstance(r, Exception) for r in results)
