"""Catalogue notions shared by station and central: material item numbers (类-序 / 类-小类-序)."""

import re
from dataclasses import dataclass

# GB/T 33870 / 《干部人事档案工作条例》: ten categories; 4 and 9 are divided into sub-categories 1-4.
CATEGORIES = {str(n) for n in range(1, 11)}
SUBDIVIDED = {"4", "9"}
_ITEM = re.compile(r"(\d{1,2})-(\d{1,2})(?:-(\d{1,3}))?")


@dataclass(frozen=True)
class Item:
    category: str  # "1" … "10", or "4-1" … "9-4"
    seq: int

    def __str__(self) -> str:
        return f"{self.category}-{self.seq}"


def parse_item(text: str) -> Item:
    """Parse ``1-3`` or ``4-1-2``; raise ValueError naming what is wrong and the right shape."""
    m = _ITEM.fullmatch(text.strip())
    if not m:
        raise ValueError(
            f"material item {text!r} is not of the form 类-序 (e.g. 1-3) or 类-小类-序 (e.g. 4-1-2)"
        )
    cat, second, third = m.group(1), int(m.group(2)), m.group(3)
    if cat not in CATEGORIES:
        raise ValueError(f"material item {text!r}: category {cat} is not one of the ten (1-10)")
    if cat in SUBDIVIDED:
        if third is None:
            raise ValueError(
                f"material item {text!r}: category {cat} is divided into {cat}-1…{cat}-4; "
                f"write e.g. {cat}-1-{second}"
            )
        if not 1 <= second <= 4:
            raise ValueError(f"material item {text!r}: sub-category {cat}-{second} does not exist")
        category, seq = f"{cat}-{second}", int(third)
    else:
        if third is not None:
            raise ValueError(f"material item {text!r}: category {cat} has no sub-categories")
        category, seq = cat, second
    if seq < 1:
        raise ValueError(f"material item {text!r}: item numbers start at 1")
    return Item(category, seq)
