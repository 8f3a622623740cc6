"""A simulated server's disk unpacks on every Python gatekeeper supports, Debian 12's python3 (3.11.2, which has
no tar extraction filters) included."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from gatekeeper.sim.openstack.hosts import pack_disk, unpack_disk


def test_disk_round_trip(tmp_path: Path) -> None:
    (tmp_path / "src" / "opt").mkdir(parents=True)
    (tmp_path / "src" / "opt" / "stack.sh").write_text("#!/bin/sh\n")
    unpack_disk(pack_disk(str(tmp_path / "src")), str(tmp_path / "dst"))
    assert (tmp_path / "dst" / "opt" / "stack.sh").read_text() == "#!/bin/sh\n"


def test_disk_unpacks_on_a_python_without_extraction_filters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "image-marker").write_text("prepared\n")
    disk = pack_disk(str(tmp_path / "src"))
    plain = tarfile.TarFile.extractall

    def extractall_of_3_11_2(self: tarfile.TarFile, path: str = ".", members: object = None, *,
                             numeric_owner: bool = False) -> None:
        plain(self, path, members, numeric_owner=numeric_owner)

    monkeypatch.delattr(tarfile, "tar_filter", raising=False)  # Debian 12's 3.11.2 has none to remove
    monkeypatch.setattr(tarfile.TarFile, "extractall", extractall_of_3_11_2)
    unpack_disk(disk, str(tmp_path / "dst"))
    assert (tmp_path / "dst" / "image-marker").read_text() == "prepared\n"
