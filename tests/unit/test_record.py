"""Records keep what a newer gatekeeper wrote when an older one rewrites them."""

from __future__ import annotations

from dataclasses import dataclass

from gatekeeper.zk.record import Record, decode


@dataclass
class Old(Record):
    name: str = ""
    count: int = 0


def test_unknown_fields_survive_a_rewrite_by_an_older_reader():
    newer = {"_v": 1, "name": "n1", "count": 2, "provider_health": {"east": "open"}, "tags": ["a"]}
    record = Old.from_dict(newer)
    record.count += 1
    written = decode(record.to_bytes())
    assert written == {"_v": 1, "name": "n1", "count": 3, "provider_health": {"east": "open"}, "tags": ["a"]}


def test_unknown_fields_do_not_take_part_in_equality():
    assert Old.from_dict({"name": "a", "extra": 1}) == Old(name="a")
    assert Old.from_dict({"name": "a", "extra": 1}).unknown_fields() == {"extra": 1}
    assert Old(name="a").unknown_fields() == {}


def test_a_known_field_always_wins_over_a_kept_unknown_one():
    record = Old.from_dict({"name": "a", "zone": "z1"})
    record.name = "b"
    assert Old.from_bytes(record.to_bytes()) == Old(name="b")
    assert decode(record.to_bytes())["zone"] == "z1"
