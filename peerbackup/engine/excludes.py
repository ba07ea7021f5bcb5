"""Exclude patterns, restic-style.

A pattern without a slash matches a name anywhere in the tree (`*.tmp`,
`node_modules`). A pattern with a slash matches whole paths: anchored at the
root when it starts with `/`, else at any directory. `*` and `?` stay within
one path component, `**` crosses them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable


def _translate(pattern: str) -> str:
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            if i < len(pattern) and pattern[i] == "/":
                out[-1] = "(?:.*/)?"
                i += 1
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = pattern.find("]", i + 1)
            if j == -1:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1:j].replace("\\", "\\\\")
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


class Excluder:
    def __init__(self, patterns: Iterable[str]) -> None:
        names: list[str] = []
        paths: list[str] = []
        for raw in patterns:
            p = raw.strip()
            if not p or p.startswith("#"):
                continue
            p = p.rstrip("/") or "/"
            if "/" in p:
                prefix = "" if p.startswith("/") else "(?:.*/)?"
                paths.append(prefix + _translate(p.lstrip("/") if p.startswith("/") else p))
            else:
                names.append(_translate(p))
        self._names = re.compile("|".join(f"(?:{n})" for n in names)) if names else None
        self._paths = re.compile("|".join(f"(?:{p})" for p in paths)) if paths else None

    def __bool__(self) -> bool:
        return bool(self._names or self._paths)

    def excluded(self, path: str, name: str) -> bool:
        """path is absolute; name is its last component."""
        if self._names is not None and self._names.fullmatch(name):
            return True
        return self._paths is not None and self._paths.fullmatch(path.lstrip("/")) is not None


def read_exclude_file(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]
