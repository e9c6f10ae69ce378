"""Import an existing directory of page images and scanned PDFs (field teams with other capture devices)."""

import re
from pathlib import Path
from typing import Iterator

from ..errors import UsageError
from . import pagefile
from .base import RawPage


def _natural_key(path: Path) -> list:
    # page2 before page10, as an operator numbering files expects
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


class FolderSource:
    """The page files of one folder, in natural name order (a PDF's pages in its order), as pages."""

    def __init__(self, folder: str | Path, dpi: int = 300, dpi_given: bool = False):
        """``dpi`` is the resolution the operator measured when ``dpi_given`` (it overrides what the files
        state), else the station's default for files that state none, each such page recorded as assumed."""
        self.folder = Path(folder)
        self.name = f"folder:{self.folder}"
        self.dpi = dpi
        if not self.folder.is_dir():
            raise UsageError(f"folder source {self.folder} is not a directory")
        files = sorted((p for p in self.folder.iterdir() if pagefile.is_page_file(p)), key=_natural_key)
        if not files:
            suffixes = sorted(pagefile.IMAGE_SUFFIXES | {pagefile.PDF_SUFFIX})
            raise UsageError(f"folder {self.folder} holds no page images ({', '.join(suffixes)})")
        # Every file is checked from its headers before the first page is captured: a file the station
        # cannot take refuses the import whole, not half-way through a batch.
        self.planned = [page for path in files for page in pagefile.inspect(path, dpi if dpi_given else None, dpi)]
        self.first = 0

    def resume_at(self, page: int) -> None:
        """The batch goes on at ``page``: the files already captured are not imported again."""
        self.first = page - 1

    def pages(self) -> Iterator[RawPage]:
        for page in self.planned[self.first:]:
            yield pagefile.decode(page)

    def close(self) -> None:
        pass
