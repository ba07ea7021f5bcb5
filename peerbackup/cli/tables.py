"""Tables for people: aligned columns that fit 80 characters, numbers to the right.

`--json` is for programs; these are for a terminal, where 80 columns is the width to
assume. A column that may shrink is cut with an ellipsis rather than wrapping the
line; ids and numbers never shrink.
"""

from __future__ import annotations

from collections.abc import Sequence

WIDTH = 80
ROLE_LETTERS = {"agent": "a", "storage": "s", "coordinator": "c", "admin": "A"}


def duration(seconds: float) -> str:
    """30 s as `30s`, 3600 as `1h`, 5400 as `90m`: the largest unit that says it exactly."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def roles_short(roles: Sequence[str]) -> str:
    """`agent,storage,coordinator,admin` as `ascA` (the table's footer says what the letters mean)."""
    return "".join(ROLE_LETTERS.get(r, "?") for r in roles) or "-"


def table(head: list[str], rows: list[list[str]], right: Sequence[int] = (), shrink: Sequence[int] = (),
          width: int = WIDTH, rule: bool = False) -> str:
    """Columns two spaces apart; `right` columns aligned right; `shrink` columns cut (widest first) until the
    lines fit `width`; with `rule`, a line of dashes under the head (the `repo` commands' tables)."""
    cells = [[str(c) for c in r] for r in [head, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    over = sum(widths) + 2 * (len(widths) - 1) - width
    while over > 0:
        candidates = [i for i in shrink if widths[i] > max(len(head[i]), 4)]
        if not candidates:
            break
        i = max(candidates, key=lambda j: widths[j])
        widths[i] -= 1
        over -= 1
    lines: list[str] = []
    for r in cells:
        out = []
        for i, c in enumerate(r):
            if len(c) > widths[i]:
                c = c[: widths[i] - 1] + "…"
            out.append(c.rjust(widths[i]) if i in right else c.ljust(widths[i]))
        # The ruled tables have always kept their head padded to full width: unchanged output.
        lines.append("  ".join(out) if rule and not lines else "  ".join(out).rstrip())
        if rule and len(lines) == 1:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
