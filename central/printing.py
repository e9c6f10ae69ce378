"""Printing rows for people (aligned tables, CJK-aware) and for scripts (JSON lines)."""

import json


def json_lines(rows: list[dict]) -> None:
    """One JSON object per line, for scripts."""
    for row in rows:
        print(json.dumps(row, ensure_ascii=False))


def table(rows: list[dict], columns: list[str]) -> None:
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max(len(c), *(width(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip())
    for row in cells:
        print("  ".join(v + " " * (w - width(v)) for v, w in zip(row, widths)).rstrip())


def width(text: str) -> int:
    # CJK characters take two terminal columns
    return sum(2 if ord(ch) > 0x2E7F else 1 for ch in text)
