"""What every command family shares: exit codes, the home and its admin API, passphrases, JSON output.

Like borg's archiver helpers: the command modules (repo, office, nodes, jobs, alerts) import this one and
never each other's privates; `main` assembles their parsers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import importlib
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from peerbackup.core.crypto import KdfParams
from peerbackup.core.identity import normalise_peer_id
from peerbackup.errors import DaemonError, DaemonNotRunning, FormatError, UsageError
from peerbackup.office.membership.home import TOKEN_HEADER, Home, default_home

EXIT_OK, EXIT_ERROR, EXIT_PARTIAL = 0, 1, 3  # and 2 for usage, argparse's own
# --repo office:NODE names a backup node's repository in the peer store (cli/officerepo.py, which is
# imported only when one is named: it brings aiohttp).
OFFICE_PREFIX = "office:"

# Office repositories' connections, closed when the command ends (cli/main.py).
closers: list[Callable[[], None]] = []


class Lazy:
    """A command's function by module (of peerbackup.cli) and name, imported when the command runs: the backup
    engine is half of the command line's start-up, and `status`, `log` or `invite` never use it."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __call__(self, args: argparse.Namespace) -> int:
        func = getattr(importlib.import_module(f"peerbackup.cli.{self.module}"), self.name)
        return int(func(args))


def is_office(repo: str | None) -> bool:
    return bool(repo) and str(repo).startswith(OFFICE_PREFIX)


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def show(as_json: bool, obj: Any, *lines: str) -> None:
    """A command's answer: `obj` as JSON for programs (--json), else `lines` for people."""
    if as_json:
        print_json(obj)
    else:
        for line in lines:
            print(line)


def local_time(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9).strftime("%Y-%m-%d %H:%M:%S")


def kdf() -> KdfParams:
    # Tests only: Argon2id at 64 MiB would dominate a test suite of many repositories.
    return KdfParams.weak() if os.environ.get("PEERBACKUP_INSECURE_TEST_KDF") == "1" else KdfParams()


def password(args: argparse.Namespace, confirm: bool = False, prompt: str = "Passphrase: ",
             env: str = "PEERBACKUP_PASSWORD", file_opt: str = "password_file") -> bytes:
    path = getattr(args, file_opt, None)
    if path:
        try:
            with open(path, "rb") as f:
                from_file = f.read().rstrip(b"\r\n")
        except OSError as exc:
            raise UsageError(f"cannot read password file {path}: {exc.strerror}") from None
        if not from_file:
            raise UsageError(f"the password file {path} is empty")
        return from_file
    value = os.environ.get(env)
    if value:
        return value.encode()
    if not sys.stdin.isatty():
        raise UsageError(f"no passphrase: set {env}, use --{file_opt.replace('_', '-')}, or run on a terminal")
    pw = getpass.getpass(prompt)
    if confirm and getpass.getpass("Repeat " + prompt.lower()) != pw:
        raise UsageError("the passphrases do not match")
    if not pw:
        raise UsageError("empty passphrase")
    return pw.encode()


def home_of(args: argparse.Namespace) -> Home:
    return Home(args.home or default_home())


def api(home: Home, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 30) -> Any:
    """One call to this home's running daemon (its local admin API, with the home's token)."""
    # Imported here: urllib.request brings http.client, email and ssl (~0.05 s), which a local
    # repository's commands never need.
    import urllib.error
    import urllib.request

    base, token = home.admin_endpoint()
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={TOKEN_HEADER: token, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error", exc.reason)
        except ValueError:
            message = exc.reason
        if exc.code == 400:
            raise UsageError(message) from None
        raise DaemonError(message) from None
    except (urllib.error.URLError, OSError):
        raise DaemonNotRunning(home.path) from None


def resolve_peer(home: Home, peer: str) -> str:
    """A peer id, or the unique name of a member."""
    try:
        return normalise_peer_id(peer)
    except FormatError:
        matches = [p["peer_id"] for p in api(home, "GET", "/v1/peers") if p["name"] == peer]
        if not matches:
            raise UsageError(f"no member is named {peer!r} (see `peerbackup peers`)") from None
        if len(matches) > 1:
            raise UsageError(f"{len(matches)} members are named {peer!r}: give the peer id") from None
        return str(matches[0])
