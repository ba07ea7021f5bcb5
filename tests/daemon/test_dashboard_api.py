"""The dashboard's side of the admin API, without a browser: who may ask, what it answers, what it refuses."""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from peerbackup.office.membership.home import TOKEN_HEADER, Home
from tests.daemon.harness import Office, Peer, node_log, wait_for
from tests.daemon.test_jobs import node_office
from tests.daemon.test_peerstore import NODE, start_office


def get(peer: Peer, path: str, token: str | None = "", method: str = "GET",
        body: Any = None) -> tuple[int, bytes, dict[str, str]]:
    base, real = Home(peer.home).admin_endpoint()
    headers = {TOKEN_HEADER: real if token == "" else token} if token is not None else {}
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def test_the_page_is_public_the_data_is_not_and_restores_stay_in_their_root(office: Office, tmp_path: Path) -> None:
    (a, b, c), src, home = node_office(office, tmp_path, ["beta"], 3, 200_000, extra_peers=["gamma"])
    wait_for(lambda: len({p.status()["config_digest"] for p in (a, b, c)}) == 1, 20, "configuration everywhere")
    snap = json.loads(office.cli("backup", NODE, "--wait", "--json", *home, timeout=120).out)["snapshots"][0]
    # The page and its assets need no token (a browser cannot send a header when it opens an address) and
    # say where they may load from; every data route needs it.
    for path in ("/ui/", "/ui/app.js", "/ui/app.css"):
        code, body, headers = get(a, path, token=None)
        assert code == 200 and body and "default-src 'self'" in headers["Content-Security-Policy"]
    assert get(a, "/ui/secret.txt", token=None)[0] == 404
    for path in ("/v1/ui/nodes", f"/v1/ui/snapshots?node={NODE}", "/v1/stream", "/v1/status"):
        assert get(a, path, token=None)[0] == 401
        assert get(a, path, token="wrong")[0] == 401
    # The page's summaries.
    code, body, _ = get(a, "/v1/ui/nodes")
    nodes = json.loads(body)
    assert code == 200 and nodes[0]["node"] == NODE and nodes[0]["snapshots"] == 1
    assert nodes[0]["last_result"] == "done" and nodes[0]["under_replicated"] == 0
    # Browsing and downloading a file.
    folder = str(src)
    code, body, _ = get(a, f"/v1/ui/tree?node={NODE}&snapshot={snap[:8]}&path={folder}")
    entries = json.loads(body)["entries"]
    assert {e["name"] for e in entries} == {"dir0", "dir1", "dir2"}
    one = next(p for p in sorted(src.rglob("*.bin")))
    code, data, headers = get(a, f"/v1/ui/download?node={NODE}&snapshot={snap[:8]}&path={one}")
    assert code == 200 and data == one.read_bytes() and one.name in headers["Content-Disposition"]
    # Restores: below the restore root only, and paths inside the snapshot without tricks.
    restore = "/v1/ui/restore"
    code, body, _ = get(a, restore, method="POST", body=["not", "an", "object"])
    assert code == 400 and b"must be a JSON object" in body
    for target in ("/etc/peerbackup-evil", "../../outside", str(a.home / "restores" / ".." / "x")):
        code, body, _ = get(a, restore, method="POST", body={"node": NODE, "snapshot": snap, "path": folder,
                                                            "target": target})
        assert code == 400 and b"restores go only below" in body, (target, body)
    (a.home / "restores").mkdir(exist_ok=True)
    (a.home / "restores" / "link").symlink_to("/tmp")  # a link out of the root is followed, then refused
    code, body, _ = get(a, restore, method="POST", body={"node": NODE, "snapshot": snap, "path": folder,
                                                        "target": "link/evil"})
    assert code == 400 and b"outside it" in body
    code, body, _ = get(a, f"/v1/ui/tree?node={NODE}&snapshot={snap}&path=/../etc")
    assert code == 400 and b"not a path inside the snapshot" in body
    code, body, _ = get(a, restore, method="POST", body={"node": NODE, "snapshot": snap, "path": folder,
                                                        "target": "here"})
    out = json.loads(body)
    assert code == 200 and out["files"] == 3 and out["errors"] == 0
    restored = a.home / "restores" / "here" / folder.lstrip("/")
    assert sorted(p.read_bytes() for p in restored.rglob("*.bin")) == sorted(p.read_bytes() for p in src.rglob("*.bin"))
    # A member that holds no keys of the node is told who does.
    code, body, _ = get(c, f"/v1/ui/snapshots?node={NODE}")
    assert code == 409 and b"only its admins and granted agents" in body
    # Restores and downloads are in the node's log.
    restores = [e for e in node_log(home, NODE) if e["kind"] == "restore.done"]
    assert {r["target"] for r in restores} >= {f"download:{one}", str(a.home / "restores" / "here")}


def test_open_pages_share_one_question_a_second_for_the_running_jobs(office: Office) -> None:
    a, b = start_office(office, ["beta"])
    wait_for(lambda: b.status()["coordinator"] == a.peer_id, 20, "beta to follow alpha")
    base, token = Home(b.home).admin_endpoint()
    host, port = base.removeprefix("http://").split(":")
    seconds, pages = 4.0, 3
    pushes: list[int] = []

    def page() -> None:
        # One dashboard page's live stream on beta: it pushes the running jobs (asked of alpha) each second.
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request("GET", "/v1/stream", headers={TOKEN_HEADER: token})
        resp = conn.getresponse()
        assert resp.status == 200
        n, deadline = 0, time.monotonic() + seconds
        while time.monotonic() < deadline:
            line = resp.readline()
            n += line.startswith(b"event: jobs")
        pushes.append(n)
        conn.close()

    before = a.log.read_text().count(f"jobs.running_asked peer={b.peer_id}")
    threads = [threading.Thread(target=page) for _ in range(pages)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    asked = a.log.read_text().count(f"jobs.running_asked peer={b.peer_id}") - before
    # Every page got its pushes; alpha was asked about once a second in all, not once per page per second.
    assert len(pushes) == pages and min(pushes) >= seconds - 1, pushes
    assert 1 <= asked <= seconds + 2 < sum(pushes), (asked, pushes)


def test_the_undo_actions_need_the_token_and_the_page_sees_their_effect(office: Office) -> None:
    """The dashboard's remove / pause / resume / restore buttons post to these routes (the admin token
    only, like every action); /v1/ui/nodes shows a paused schedule as paused, without a next run."""
    (a,) = start_office(office, [])
    home = ["--home", str(a.home)]
    office.cli("dataset", "add", NODE, "/srv/one", "--allow-missing", *home)
    office.cli("dataset", "add", NODE, "/srv/two", "--allow-missing", *home)
    sid = office.cli("schedule", "add", NODE, "--every", "1h", "--json", *home).json()["schedule"]["id"]
    actions: list[tuple[str, dict[str, Any]]] = [
        ("/v1/schedules/pause", {"node": NODE, "id": sid}), ("/v1/schedules/resume", {"node": NODE, "id": sid}),
        ("/v1/schedules/remove", {"node": NODE, "id": sid}),
        ("/v1/datasets/remove", {"node": NODE, "path": "/srv/one"}),
        ("/v1/nodes/remove", {"node": NODE}), ("/v1/nodes/restore-config", {"node": NODE}),
        ("/v1/nodes/purge", {"node": NODE})]
    for path, asked in actions:
        assert get(a, path, token=None, method="POST", body=asked)[0] == 401
        assert get(a, path, token="wrong", method="POST", body=asked)[0] == 401
    assert office.cli("node", "show", NODE, "--json", *home).json()["schedules"][0]["paused"] == 0  # untouched

    code, _, _ = get(a, "/v1/schedules/pause", method="POST", body={"node": NODE, "id": sid})
    assert code == 200
    [shown] = json.loads(get(a, "/v1/ui/nodes")[1])[0]["schedules"]
    assert shown["id"] == sid and shown["paused"] and shown["next_run"] is None
    code, body, _ = get(a, "/v1/schedules/pause", method="POST", body={"node": NODE, "id": sid})
    assert code == 400 and "paused already" in json.loads(body)["error"]
    assert get(a, "/v1/schedules/resume", method="POST", body={"node": NODE, "id": sid})[0] == 200
    [shown] = json.loads(get(a, "/v1/ui/nodes")[1])[0]["schedules"]
    assert shown["paused"] is None and shown["next_run"]
    assert get(a, "/v1/schedules/wipe", method="POST", body={"node": NODE, "id": sid})[0] == 404
    assert get(a, "/v1/datasets/remove", method="POST", body={"node": NODE, "path": "/srv/one"})[0] == 200
    assert [d["path"] for d in json.loads(get(a, "/v1/ui/nodes")[1])[0]["datasets"]] == ["/srv/two"]

    assert get(a, "/v1/nodes/remove", method="POST", body={"node": NODE})[0] == 200
    assert json.loads(get(a, "/v1/ui/nodes")[1]) == []
    [gone] = json.loads(get(a, "/v1/nodes?removed=1")[1])
    assert gone["node"] == NODE and gone["restorable_until"] > time.time() and not gone["purged"]
    code, body, _ = get(a, "/v1/nodes/purge", method="POST", body={"node": NODE})
    assert code == 400 and "inside its grace" in json.loads(body)["error"]
    assert get(a, "/v1/nodes/restore-config", method="POST", body={"node": NODE})[0] == 200
    [back] = json.loads(get(a, "/v1/ui/nodes")[1])
    assert [d["path"] for d in back["datasets"]] == ["/srv/two"] and [s["id"] for s in back["schedules"]] == [sid]
