"""What every capture source yields, and the interface they share."""

from dataclasses import dataclass, field
from typing import Iterator, Protocol

import numpy as np


@dataclass
class RawPage:
    """One side of one sheet as the source delivered it, before any processing."""

    image: np.ndarray          # H×W×3 RGB or H×W grey, uint8
    dpi: int                   # the resolution the source scanned at
    # Where ``dpi`` came from (quire.manifest.DPI_SOURCES): the scanner's setting, the file's header,
    # the operator's measurement, or the station's default because nothing said ("assumed").
    dpi_source: str = "scanner"
    side: str = "front"        # "front" or "back" (duplex)
    origin: str = ""           # where it came from, for messages: device, file name …
    truth: dict = field(default_factory=dict)  # ground-truth labels (synthetic pages only)
    # The physical width and height (mm) the image covers, as the scanner's own geometry reports it;
    # the archive checks pixels ÷ this size against the stated dpi (effective resolution).
    area_mm: tuple[float, float] | None = None


class Source(Protocol):
    """A capture source: yields pages until the feeder (or folder, or generator) is empty.

    A fault (jam, cover open …) is raised as a ``station.errors.ScannerError`` after every page
    already yielded; the caller has stored those pages by then.
    """

    name: str

    def pages(self) -> Iterator[RawPage]: ...

    def close(self) -> None: ...
