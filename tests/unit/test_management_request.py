"""Operator requests are typed records: checked once when read, each refusal naming the field, and a newer
sender's fields kept."""

from __future__ import annotations

import pytest

from gatekeeper.zk.management import Action, MalformedRequest, ManagementRequest
from gatekeeper.zk.record import decode

MALFORMED = [
    (["enqueue"], "the request is not an object (got list)"),
    ({"pipeline": "gate", "change": "1,1"}, 'field "action": None is not an operator action (expected one of '
                                            "enqueue, dequeue, promote, reload)"),
    ({"action": "explode", "pipeline": "gate"}, "field \"action\": 'explode' is not an operator action"),
    ({"action": ["enqueue"], "pipeline": "gate"}, "field \"action\": ['enqueue'] is not an operator action"),
    ({"action": "enqueue", "change": "1,1"}, 'field "pipeline": enqueue needs a pipeline'),
    ({"action": "enqueue", "pipeline": 7, "change": "1,1"}, 'field "pipeline": 7 is not a string'),
    ({"action": "dequeue", "pipeline": "gate"}, "field \"change\": '' is not a change (expected NUMBER,PATCHSET"),
    ({"action": "dequeue", "pipeline": "gate", "change": "1;rm -rf"}, "field \"change\": '1;rm -rf' is not a change"),
    ({"action": "promote", "pipeline": "gate"}, 'field "changes": promote needs at least one change'),
    ({"action": "promote", "pipeline": "gate", "changes": "1,1"}, "field \"changes\": '1,1' is not a list"),
    ({"action": "promote", "pipeline": "gate", "changes": ["1,1", "x"]}, "field \"changes\": 'x' is not a change"),
    ({"action": "promote", "pipeline": "gate", "changes": ["1,1"] * 501}, "501 changes are more than one promote"),
    ({"action": "enqueue", "pipeline": "g" * 300, "change": "1,1"}, "a name of 300 characters is not a pipeline"),
    ({"action": "reload", "created": "yesterday"}, "field \"created\": 'yesterday' is not a time in seconds"),
    ({"action": "reload", "user": {"name": "x"}}, "field \"user\": {'name': 'x'} is not a string"),
    ({"action": "reload", "user": "u" * 256}, 'field "user": a name of 256 characters is too long'),
    ({"action": "dequeue", "pipeline": "gate", "change": "1,1\n"}, "field \"change\": '1,1\\n' is not a change"),
]


@pytest.mark.parametrize(("data", "expected"), MALFORMED, ids=[e[:40] for _, e in MALFORMED])
def test_a_malformed_request_is_refused_naming_the_field(data, expected):
    with pytest.raises(MalformedRequest) as refused:
        ManagementRequest.parse(data)
    assert expected in str(refused.value)


def test_a_request_reads_back_typed_and_keeps_a_newer_senders_fields():
    sent = ManagementRequest(Action.PROMOTE, "gate", changes=["5,1", "6,2"], user="rita", id="abc", created=1.5)
    data = decode(sent.to_bytes())
    assert data == {"_v": 1, "action": "promote", "pipeline": "gate", "change": "", "changes": ["5,1", "6,2"],
                    "user": "rita", "id": "abc", "created": 1.5, "project": "", "ref": "", "oldrev": "",
                    "newrev": ""}
    read = ManagementRequest.parse({**data, "priority": "high"})
    assert read == sent and read.action is Action.PROMOTE
    assert decode(read.to_bytes())["priority"] == "high"
    assert read.subject() == "5,1 6,2"


def test_a_request_written_before_records_were_versioned_still_reads():
    read = ManagementRequest.parse({"action": "dequeue", "pipeline": "gate", "change": "4,1", "id": "x",
                                    "created": 12, "_attempts": 1})
    assert (read.action, read.pipeline, read.change, read.created) == (Action.DEQUEUE, "gate", "4,1", 12)
    assert read.unknown_fields() == {"_attempts": 1}  # the dead letters' bookkeeping survives a replay
