"""Tables for people fit 80 columns, keep ids whole and numbers to the right."""

from __future__ import annotations

from peerbackup.cli.tables import duration, roles_short, table


def test_a_wide_table_fits_80_columns_by_cutting_only_the_shrinkable_columns() -> None:
    rows = [["a-very-long-peer-name-indeed", "alive", "127.0.0.1:47401", "ascA", "100", "4R3W-OVQ5-HDRM-GT3T"],
            ["b", "dead", "[fe80::1234:5678:9abc:def0%eth0]:7420", "as", "7", "G5N4-QR4R-U6F4-RXCE"]]
    out = table(["NAME", "STATE", "ADDRESS", "ROLES", "RANK", "PEER"], rows, right=(4,), shrink=(0, 2))
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "4R3W-OVQ5-HDRM-GT3T" in out and "G5N4-QR4R-U6F4-RXCE" in out  # ids stay whole
    assert "…" in lines[1] or "…" in lines[2]
    rank = lines[0].index("RANK") + len("RANK")
    assert lines[1][rank - 3:rank] == "100" and lines[2][rank - 1] == "7"  # right-aligned under its header


def test_a_narrow_table_is_left_alone() -> None:
    assert table(["A", "B"], [["x", "1"]], right=(1,)) == "A  B\nx  1"


def test_short_forms() -> None:
    assert roles_short(["agent", "storage", "coordinator", "admin"]) == "ascA"
    assert roles_short([]) == "-"
    assert [duration(s) for s in (30, 60, 5400, 3600, 86400, 4.5)] == ["30s", "1m", "90m", "1h", "1d", "4.5s"]


def test_a_ruled_table_is_the_repo_commands_layout() -> None:
    # `repo snapshots` and `repo key list`: a dashed rule under a head padded to full width, rows trimmed.
    out = table(["ID", "Host", "Size"], [["ab12cd34", "pc", "1.5 KiB"], ["ef56", "laptop", ""]], rule=True)
    assert out.split("\n") == ["ID        Host    Size   ",
                               "--------  ------  -------",
                               "ab12cd34  pc      1.5 KiB",
                               "ef56      laptop"]
