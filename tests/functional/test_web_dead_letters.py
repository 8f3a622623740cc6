"""Dead letters over HTTP, against a real ZooKeeper: counted in the status document and /metrics, listed, and
replayed into their queue or discarded by an operator with the admin token."""

from __future__ import annotations

import json

from gatekeeper.web.server import WebService
from gatekeeper.zk import paths
from gatekeeper.zk.deadletter import DeadLetters
from gatekeeper.zk.record import encode
from tests.http import call

TOKEN = "dead-letter-admin"


def set_aside(zk, n: int) -> list[str]:
    queue = paths.event_queue("gerrit")
    zk.client.ensure_path(queue)
    idents = []
    for i in range(n):
        created = zk.client.create(f"{queue}/q-", encode({"type": "comment-added", "n": i}), sequence=True)
        letter = DeadLetters(zk).set_aside("gerrit", created.rsplit("/", 1)[1], f"boom {i}", retry_in=None,
                                           about=f"comment-added {i},1")
        idents.append(letter.ident)
    return idents


def test_dead_letters_are_counted_listed_replayed_and_discarded(zk):
    first, second = set_aside(zk, 2)
    web = WebService(zk, port=0, admin_token=TOKEN, layout_loader=lambda: None).start()
    try:
        code, status = call(f"{web.url}/api/v1/status")
        assert code == 200 and status["dead_letters"] == {"dead": 2, "retrying": 0, "total": 2}
        code, metrics = call(f"{web.url}/metrics")
        text = metrics.decode()
        assert 'gatekeeper_events_set_aside{state="dead"} 2.0' in text
        assert "gatekeeper_dead_letters_total 2.0" in text
        code, listed = call(f"{web.url}/api/v1/events/dead-letters")
        assert code == 200 and [(x["id"], x["error"]) for x in listed] == [(first, "boom 0"), (second, "boom 1")]

        assert call(f"{web.url}/api/v1/admin/events/{first}/replay", "POST")[0] == 401
        assert call(f"{web.url}/api/v1/admin/events/{first}/replay", "POST", "wrong")[0] == 403
        code, body = call(f"{web.url}/api/v1/admin/events/{first}/replay", "POST", TOKEN)
        assert code == 200 and body["replayed"] == first
        back = zk.client.get_children(paths.event_queue("gerrit"))
        assert [json.loads(zk.client.get(f"{paths.event_queue('gerrit')}/{c}")[0])["n"] for c in back] == [0]
        code, body = call(f"{web.url}/api/v1/admin/events/{second}/discard", "POST", TOKEN)
        assert code == 200 and DeadLetters(zk).list() == []
        assert call(f"{web.url}/api/v1/admin/events/{second}/discard", "POST", TOKEN)[0] == 404
        assert call(f"{web.url}/api/v1/admin/events/{second}/explode", "POST", TOKEN)[0] == 404
        # "." and ".." (as %2e) name no dead letter: a 404, not a path of ZooKeeper's refused with a 500
        for name in ("%2e", "%2e%2e", ".."):
            assert call(f"{web.url}/api/v1/admin/events/{name}/discard", "POST", TOKEN)[0] == 404, name
            assert call(f"{web.url}/api/v1/admin/events/{name}/replay", "POST", TOKEN)[0] == 404, name
    finally:
        web.stop()
