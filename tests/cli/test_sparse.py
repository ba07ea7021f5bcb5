"""A 200 MiB disk image with 1 MiB of data, through the command line: restored in about 1 MiB, not 200."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

from tests.cli.conftest import CLI
from tests.engine.test_sparse import allocated, require_holes

MiB = 1024 * 1024


def digest(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def test_a_200_mib_file_with_1_mib_of_data_round_trips_with_its_holes(cli: CLI, tmp_path: Path) -> None:
    require_holes(tmp_path)
    src = tmp_path / "src"
    src.mkdir()
    image = src / "outlook.ost"
    rng = random.Random(17)
    with open(image, "wb") as f:
        f.truncate(200 * MiB)
        for where in (0, 37 * MiB + 4096, 150 * MiB, 200 * MiB - 256 * 1024):  # 4 x 256 KiB, the last at the end
            f.seek(where)
            f.write(rng.randbytes(256 * 1024))
    before = allocated(image)
    assert before <= 2 * MiB

    cli("repo", "init")
    snap = cli("repo", "backup", "--json", str(src)).json()["snapshot"]
    assert snap["summary"]["bytes_read"] == MiB  # only the data was read
    out = tmp_path / "out"
    res = cli("repo", "restore", "--json", snap["short_id"], "--target", str(out)).json()
    assert res["errors"] == [] and res["bytes"] == 200 * MiB
    restored = out / str(image).lstrip("/")
    assert os.path.getsize(restored) == 200 * MiB and digest(restored) == digest(image)
    assert allocated(restored) <= before + MiB, (allocated(restored), before)
    assert "no errors found" in cli("repo", "check", "--read-data").out

    # --no-sparse: a file system without holes gets the zeros written; the same bytes, all allocated.
    dense = tmp_path / "dense"
    cli("repo", "restore", "--no-sparse", snap["short_id"], "--target", str(dense))
    full = dense / str(image).lstrip("/")
    assert digest(full) == digest(image)
    assert allocated(full) >= 200 * MiB
