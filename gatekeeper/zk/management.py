"""Operator requests to the schedulers (enqueue, dequeue, promote, reload), sent through ZooKeeper.

The request goes into the management event queue; a scheduler applies it and writes the answer at
`/events/management/results/<id>`. Used by the operator CLI and the web's admin API alike.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from kazoo.exceptions import NoNodeError
from kazoo.recipe.watchers import DataWatch

from gatekeeper.zk import paths
from gatekeeper.zk.client import ZKClient
from gatekeeper.zk.event_queue import EventQueue
from gatekeeper.zk.record import decode


class ManagementTimeout(RuntimeError):
    """No scheduler answered in time; the message says whether the request was withdrawn or may still run."""


def send_management(zk: ZKClient, request: dict[str, Any], timeout: float = 30.0) -> str:
    """Write an operator request and wait for a scheduler's answer: "" when done, else the error for people.

    When no answer comes in time the request is withdrawn from the queue if no scheduler has taken it yet, so that
    an operator told "it failed" is never surprised by it running later.
    """
    request = {**request, "id": uuid.uuid4().hex, "created": time.time()}
    ident = EventQueue(zk, paths.management_queue()).put(request)
    answered = threading.Event()
    answer: dict[str, str] = {}
    path = paths.management_result(ident)

    def on_data(data: bytes | None, stat: Any) -> bool | None:
        if data is not None:
            answer.update(decode(data))
            answered.set()
            return False
        return None

    zk.client.ensure_path(paths.MANAGEMENT_RESULTS)
    DataWatch(zk.client, path, on_data)
    if not answered.wait(timeout) and not answered.is_set():
        if _withdraw(zk, ident):
            raise ManagementTimeout(f"no scheduler answered {request['action']} within {timeout:.0f}s (is a "
                                    "scheduler running?); the request was withdrawn and will not run")
        else:
            raise ManagementTimeout(f"a scheduler took {request['action']} but did not answer within "
                                    f"{timeout:.0f}s; it may still take effect (see gatekeeper status)")
    try:
        zk.client.delete(path)
    except NoNodeError:
        pass
    return answer.get("error", "")


def _withdraw(zk: ZKClient, ident: str) -> bool:
    """Delete a queued request no scheduler has applied yet; False when it is already being applied or gone."""
    try:
        raw, stat = zk.client.get(f"{paths.management_queue()}/{ident}")
        data = decode(raw)
        if isinstance(data, dict) and (data.get("_seen") or data.get("_answered")):
            return False
        zk.client.delete(f"{paths.management_queue()}/{ident}", version=stat.version)
        return True
    except NoNodeError:
        return False
    except Exception:
        return False
