"""`make run`: a one-peer office under ./.run/ in the checkout, initialised once, then started.

Never the user's real default home: everything lives in the directory given
(./.run), including the recovery kit and a generated kit passphrase, since this
is an office for trying peerbackup out, not for keeping backups.
"""

from __future__ import annotations

import os
import secrets
import socket
import sys
from pathlib import Path

from peerbackup.cli.main import main as cli_main
from peerbackup.office.membership.home import Home, write_private

LISTEN = "127.0.0.1:7420"


def run(root: str) -> int:
    base = Path(root).absolute()
    home = Home(base / "home")
    pw_file = base / "kit-passphrase.txt"
    if not home.initialised():
        base.mkdir(parents=True, exist_ok=True)
        if not pw_file.exists():
            write_private(pw_file, secrets.token_urlsafe(18).encode())
        rc = cli_main(["init", "--home", str(home.path), "--office", "Trial office",
                       "--name", socket.gethostname()[:64] or "peer1", "--kit", str(base / "recovery-kit.pbkit"),
                       "--password-file", str(pw_file)])
        if rc != 0:
            return rc
    print(f"""
Starting the daemon of a one-peer office (home {home.path}); Ctrl-C stops it.
In another terminal, from this checkout:
  .venv/bin/peerbackup status --home {home.path}
  .venv/bin/peerbackup peers  --home {home.path}
Add a second peer on this machine:
  .venv/bin/peerbackup join --home {base}/peer2 --name peer2 "$(.venv/bin/peerbackup invite --home {home.path})"
  .venv/bin/peerbackup up   --home {base}/peer2 --listen 127.0.0.1:0 --mdns-interface 127.0.0.1
Back a folder up into the office (each pack on the other peers once there are some):
  .venv/bin/peerbackup node add docs --replicas 1 --home {home.path}
  .venv/bin/peerbackup repo backup --repo office:docs --home {home.path} DIR
  .venv/bin/peerbackup storage --home {home.path}
The recovery kit is {base}/recovery-kit.pbkit, its passphrase in {pw_file}.
""", flush=True)
    os.execv(sys.executable, [sys.executable, "-m", "peerbackup", "up", "--home", str(home.path),
                              "--listen", LISTEN, "--mdns-interface", "127.0.0.1"])


if __name__ == "__main__":
    sys.exit(run(sys.argv[1] if len(sys.argv) > 1 else ".run"))
