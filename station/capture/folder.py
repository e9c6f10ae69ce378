"""Import an existing directory of page images (field teams with other capture devices)."""

import re
from pathlib import Path
from typing import Iterator

from ..errors import UsageError
from ..pipeline import read_image
from .base import RawPage

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".pnm", ".ppm", ".pgm"}


def _natural_key(path: Path) -> list:
    # page2 before page10, as an operator numbering files expects
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


class FolderSource:
    """The image files of one folder, in natural name order, as pages."""

    def __init__(self, folder: str | Path, dpi: int = 300, dpi_given: bool = False):
        """``dpi`` is the resolution of files whose header states none: measured by the operator when
        ``dpi_given``, else only the station's default, and each such page is recorded as assumed."""
        self.folder = Path(folder)
        self.name = f"folder:{self.folder}"
        self.dpi = dpi
        self.fallback_source = "operator" if dpi_given else "assumed"
        if not self.folder.is_dir():
            raise UsageError(f"folder source {self.folder} is not a directory")
        self.files = sorted(
            (p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key
        )
        if not self.files:
            raise UsageError(
                f"folder {self.folder} holds no page images ({', '.join(sorted(IMAGE_SUFFIXES))})"
            )

    def pages(self) -> Iterator[RawPage]:
        for path in self.files:
            try:
                image, dpi = read_image(path)
            except (OSError, ValueError) as exc:
                raise UsageError(f"{path}: cannot read the image ({exc}); fix or remove it and resume") from None
            yield RawPage(image, dpi or self.dpi, dpi_source="file" if dpi else self.fallback_source, origin=str(path))

    def close(self) -> None:
        pass
