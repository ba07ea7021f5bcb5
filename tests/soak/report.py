"""The soak's report: a table on stdout, the whole record as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.soak.invariants import Verdict


def table(verdicts: list[Verdict], extra: dict[str, str]) -> str:
    rows = [(f"({i}) {v.name}", "ok" if v.ok else "BROKEN", v.figure) for i, v in enumerate(verdicts, 1)]
    rows += [(k, "", v) for k, v in extra.items()]
    w0 = max(len(r[0]) for r in rows)
    lines = [f"{'invariant':<{w0}}  {'result':<6}  figures", f"{'-' * w0}  ------  -------"]
    lines += [f"{a:<{w0}}  {b:<6}  {c}" for a, b, c in rows]
    return "\n".join(lines)


def broken(report: dict[str, Any]) -> list[str]:
    """'key: figure' of each broken invariant of a JSON report (what the pytest run lists when it fails)."""
    return [f"{v['key']}: {v['figure']}" for v in report["invariants"] if not v["ok"]]


def write(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str))
