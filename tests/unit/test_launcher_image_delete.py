"""Deleting an image is checked: asked again up to three times, half a second apart, while the cloud still lists
it; a cloud that keeps it is logged and the build record kept (False)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from gatekeeper.launcher.cleanup import _delete_image


@dataclass
class Adapter:
    lingers: int  # how many checks still find the image after a delete
    deletes: list[float] = field(default_factory=list)

    def delete_image(self, image_id: str) -> None:
        self.deletes.append(time.monotonic())

    def get_image(self, image_id: str) -> object | None:
        self.lingers -= 1
        return object() if self.lingers >= 0 else None


@dataclass
class Manager:
    adapter: Adapter
    name: str = "alpha"


def test_an_image_the_cloud_forgets_at_the_second_check_is_deleted(caplog):
    manager = Manager(Adapter(lingers=1))
    assert _delete_image(manager, "img-1") is True
    assert len(manager.adapter.deletes) == 2
    assert manager.adapter.deletes[1] - manager.adapter.deletes[0] >= 0.45
    # (only the cleanup's own records: another test's ZooKeeper client may log a dropped connection meanwhile)
    assert not [r for r in caplog.records if r.name == "gatekeeper.launcher.cleanup"]


def test_an_image_the_cloud_keeps_is_reported_after_three_tries(caplog):
    manager = Manager(Adapter(lingers=99))
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="gatekeeper.launcher.cleanup"):
        assert _delete_image(manager, "img-2") is False
    assert len(manager.adapter.deletes) == 3
    assert time.monotonic() - started >= 0.9  # asked again half a second apart, not at once
    assert [r.getMessage() for r in caplog.records if r.name == "gatekeeper.launcher.cleanup"] == [
        "provider alpha: image img-2 is still there after delete"]


def test_no_image_id_is_nothing_to_delete():
    manager = Manager(Adapter(lingers=99))
    assert _delete_image(manager, "") is True and manager.adapter.deletes == []
