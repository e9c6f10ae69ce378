"""One scanning batch: capture → process → store each page durably → seal the material."""

import time
from dataclasses import dataclass, field
from typing import Callable

from quire.catalogue import parse_item

from . import outbox
from .capture import Source, open_source
from .errors import FeederEmpty, ScannerError, UsageError
from .home import Station
from .pipeline import process_page


@dataclass
class ScanResult:
    batch_id: str
    archive_no: str
    item: str
    first_page: int               # >1 when this run resumed an interrupted batch
    pages: int = 0                # pages captured by this run
    total_pages: int = 0          # pages in the batch
    bytes: int = 0
    raw_bytes: int = 0
    bundle_id: str | None = None
    capture_s: float = 0.0
    process_s: float = 0.0
    store_s: float = 0.0
    records: list = field(default_factory=list)


def scan(station: Station, dossier: dict, material: dict, source: "str | Source | None" = None,
         operator: str | None = None, on_page: Callable[[int, dict], None] | None = None) -> ScanResult:
    """Scan one material until the source is empty, then seal it into a signed bundle.

    Each page is stored (file fsynced and renamed, row committed) before the next is requested,
    so a fault or a kill loses nothing already captured; scanning the same material again
    resumes the batch at the next page.
    """
    cfg = station.config
    if not dossier.get("archive_no"):
        raise UsageError("a dossier archive number (档号) is required: --dossier D-0001")
    try:
        parse_item(material.get("item", ""))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not material.get("title"):
        raise UsageError("a material title is required: --title …")
    if source is None or isinstance(source, str):
        source = open_source(source or cfg.source, cfg.dpi, cfg.sane_options)
    try:
        batch = station.store.open_batch(dossier, material, source.name, operator or cfg.operator)
    except BaseException:
        source.close()
        raise
    result = ScanResult(batch.id, batch.archive_no, batch.item, first_page=batch.next_n)
    n = batch.next_n
    try:
        pages = source.pages()
        while True:
            t0 = time.perf_counter()
            raw = next(pages, None)
            t1 = time.perf_counter()
            if raw is None:
                break
            processed = process_page(raw.image, raw.dpi, cfg.pipeline)
            t2 = time.perf_counter()
            station.store.add_page(batch.id, n, processed)
            t3 = time.perf_counter()
            result.capture_s += t1 - t0
            result.process_s += t2 - t1
            result.store_s += t3 - t2
            result.pages += 1
            result.bytes += len(processed.data)
            result.raw_bytes += raw.image.nbytes
            result.records.append(processed.record)
            if on_page:
                on_page(n, processed.record)
            n += 1
    except ScannerError as exc:
        err = exc.at(n)
        station.store.interrupt(batch.id, str(err))
        raise err from None
    finally:
        source.close()
    result.total_pages = n - 1
    if result.total_pages == 0:
        station.store.interrupt(batch.id, "no pages captured")
        raise FeederEmpty().at(1)
    result.bundle_id = outbox.seal_batch(station.store, batch.id, station.station_id, station.key)
    return result
