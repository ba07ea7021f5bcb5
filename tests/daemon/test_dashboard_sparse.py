"""A sparse file of a backup node: through the dashboard downloaded with its holes as zeros, restored with its
holes kept, or written out in full when the restore asks for no_sparse; and the same by `restore NODE`."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.daemon.harness import Office, wait_for
from tests.daemon.test_dashboard_api import get
from tests.daemon.test_jobs import node_office
from tests.daemon.test_peerstore import NODE
from tests.engine.test_sparse import allocated, require_holes, write_layout

MiB = 1024 * 1024


def test_dashboard_download_and_restore_keep_holes_or_write_them(office: Office, tmp_path: Path) -> None:
    require_holes(tmp_path)
    (a, b), src, home = node_office(office, tmp_path, ["beta"], 1, 10_000)
    image = src / "disk.img"  # 16 MiB holding 24 KiB of data, at the start, the middle and the end
    want = write_layout(image, ([("data", 2), ("hole", 2000), ("data", 3), ("hole", 2090), ("data", 1)], 0), 8)
    wait_for(lambda: len({p.status()["config_digest"] for p in (a, b)}) == 1, 20, "configuration everywhere")
    snap = json.loads(office.cli("backup", NODE, "--wait", "--json", *home, timeout=120).out)["snapshots"][0]

    code, data, _ = get(a, f"/v1/ui/download?node={NODE}&snapshot={snap[:8]}&path={image}")
    assert code == 200 and data == want

    (a.home / "restores").mkdir(exist_ok=True)
    restore = "/v1/ui/restore"
    for target, options in (("holes", {}), ("full", {"no_sparse": True})):
        code, body, _ = get(a, restore, method="POST", body={"node": NODE, "snapshot": snap, "path": str(image),
                                                            "target": target, **options})
        assert code == 200 and json.loads(body)["errors"] == 0, body
    kept = a.home / "restores" / "holes" / str(image).lstrip("/")
    full = a.home / "restores" / "full" / str(image).lstrip("/")
    assert kept.read_bytes() == want and full.read_bytes() == want
    assert allocated(kept) <= allocated(image) + MiB
    assert allocated(full) >= os.path.getsize(image)

    code, body, _ = get(a, restore, method="POST", body={"node": NODE, "snapshot": snap, "path": str(image),
                                                        "target": "x", "no_sparse": "yes"})
    assert code == 400 and b"no_sparse" in body

    for target, flags in (("cli-holes", []), ("cli-full", ["--no-sparse"])):
        office.cli("restore", NODE, "latest", *flags, "--target", str(tmp_path / target), *home)
    kept, full = (tmp_path / t / str(image).lstrip("/") for t in ("cli-holes", "cli-full"))
    assert kept.read_bytes() == want and full.read_bytes() == want
    assert allocated(kept) <= allocated(image) + MiB and allocated(full) >= os.path.getsize(image)
