"""The tables of `runner.report`, as aligned text or as Markdown, from the same cells.

Cells come from logs that may come from anyone: control characters are spelt as escapes in
both forms, and a Markdown cell's `|` is escaped so that it stays one cell.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

from runner.record import console


def printable(text: str) -> str:
    """`text` with control characters (a terminal's escape sequences) spelt as escapes."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "") -> List[str]:
    """Columns padded to their widest cell, two spaces apart; no trailing spaces."""
    cells = [[printable(str(c)) for c in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return [indent + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> List[str]:
    """A GitHub-flavoured Markdown table: a header row, a `---` row, one row per entry."""

    def cell(text: str) -> str:
        return printable(str(text)).replace("\\", "\\\\").replace("|", "\\|") or " "

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return lines


def number(v: float) -> str:
    """A statistic as a person reads it: 6 significant digits, `-` when there is none."""
    return "-" if v is None else f"{v:.6g}"


def sweep_md(rows: List[Dict[str, Any]]) -> List[str]:
    """A sweep's rows (`runner.sweep.summary.collect`) as a Markdown table."""
    names = list(dict.fromkeys(n for r in rows for n in r["derivatives"]))
    header = ["job", "overrides", "status", "outcome", *names]
    body = [
        [
            r["job"],
            " ".join(r["overrides"]),
            r["status"],
            "as declared" if r["met"] else "FAILED",
            *[console.show(r["derivatives"][n]) if n in r["derivatives"] else "-" for n in names],
        ]
        for r in rows
    ]
    return md_table(header, body)
