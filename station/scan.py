"""One scanning batch: capture → spool → process (every core) → store in page order → seal the material.

The capture loop spools each raw page (file and row, outside the process) before it asks the
scanner for the next one — on a duplex feed each sheet, both sides or neither, so a sheet fed again
after a fault is never captured twice — and a fault or a kill loses nothing captured. Processing
runs on a pool of workers meanwhile, and a store thread writes the processed pages in page order,
each sheet's pages in one transaction, so the scanner never waits on the CPU; it waits only when
the spool already holds ``spool_pages`` pages (backpressure: memory and disk stay bounded whatever
the scanner's speed). A power cut loses what was spooled and not yet stored (the spool is not
flushed: see ``spool``); the stored pages end at a sheet boundary, and the operator is told which
sheet to feed again.
"""

import json
import os
import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from quire.catalogue import parse_item
from quire.db import atomic
from quire.memory import release_free_heap

from . import outbox
from .capture import RawPage, Source, open_source
from .errors import FeederEmpty, ScannerError, UsageError
from .home import Station
from .pipeline import PipelineConfig, ProcessedPage, process_page
from .pipeline.process import process_taken
from .pipeline.coversheet import find as find_sheet
from .pipeline.encode import encode
from .spool import Spool, Spooled, Staged, feed_again


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
    capture_s: float = 0.0        # waiting for the scanner to deliver pages
    process_s: float = 0.0        # processing, summed over the workers (runs alongside capture)
    store_s: float = 0.0          # spooling raw pages and storing processed ones
    held_s: float = 0.0           # the scanner held back because the spool was full
    recovered: int = 0            # pages a killed run had spooled, processed and stored by this one
    records: list = field(default_factory=list)
    review_reason: str | None = None    # kept open for the operator (its count differs from the directory)


def scan(station: Station, dossier: dict, material: dict, source: "str | Source | None" = None,
         operator: str | None = None, on_page: Callable[[int, dict], None] | None = None,
         hold_on_mismatch: bool = False) -> ScanResult:
    """Scan one material until the source is empty, then seal it into a signed bundle.

    Each page (on a duplex feed, each sheet) is spooled (raw files in the page cache, rows committed)
    before the next is requested, and stored in the page store in page order as soon as it is
    processed; a fault or a kill loses nothing already captured, and scanning the same material
    again first stores what a killed run left spooled, then resumes the batch at the next page.
    A page count differing from the directory raises PageCountMismatch (the batch kept for review), or
    with ``hold_on_mismatch`` is returned unsealed with the reason (a dossier's feed goes on).
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
        source = open_source(source or cfg.source, cfg.dpi, cfg.sane_options, cfg.scanner_page_timeout_s)
    try:
        batch = station.store.open_batch(dossier, material, source.name, operator or cfg.operator)
        spool = open_spool(station)
    except BaseException:
        source.close()
        raise
    try:
        recovered = recover(station, spool, batch.id, on_page)
        batch = station.store.batch(batch.id)
        if batch.next_n > 1 and hasattr(source, "resume_at"):
            source.resume_at(batch.next_n)  # fed again with what is left, not from the first sheet
        result = ScanResult(batch.id, batch.archive_no, batch.item, first_page=batch.next_n, recovered=recovered)
        n = _capture(station, spool, batch.id, batch.next_n, source, result, on_page)
    finally:
        source.close()
        spool.close()
    result.total_pages = n - 1
    if result.total_pages == 0:
        station.store.interrupt(batch.id, "no pages captured")
        raise FeederEmpty().at(1)
    try:
        result.bundle_id = outbox.seal_batch(station.store, batch.id, station.station_id, station.key)
    except outbox.PageCountMismatch as exc:
        if not hold_on_mismatch:
            raise
        result.review_reason = str(exc)
    return result


def extent_mm(raw: RawPage, page: ProcessedPage) -> list[float]:
    """The physical size of the processed page, from the scanner's own mm-per-pixel (not from its dpi)."""
    return _extent(raw.area_mm, raw.image.shape, page)


def _extent(area_mm: tuple[float, float], shape: tuple[int, ...], page: ProcessedPage) -> list[float]:
    mm_per_px = (area_mm[0] / shape[1], area_mm[1] / shape[0])
    if page.record.get("orientation") in (90, 270):
        mm_per_px = mm_per_px[::-1]     # turned a quarter: the page's width lies along the scan's height
    return [round(page.width_px * mm_per_px[0], 2), round(page.height_px * mm_per_px[1], 2)]


def default_workers(cores: int) -> int:
    """Pages processed at once when station.toml does not say: one per core, less the core the capture,
    spool, store and sync threads need on a box of three or more (a 4-core Pi: 3 workers, which keeps a
    colour batch at 300 dpi under 400 MB; bench.station measures it)."""
    return cores - 1 if cores >= 3 else max(1, cores)


def open_spool(station: Station) -> Spool:
    """The station's capture spool (raw pages not yet in the page store)."""
    return Spool(station.config.db_path, station.config.home / "spool")


def recover(station: Station, spool: Spool, batch_id: str | None = None,
            on_page: Callable[[int, dict], None] | None = None) -> int:
    """Process and store, in order, every page a killed run left in the spool; how many were stored.

    ``on_page`` is told each of batch ``batch_id``'s, as the capture loop tells its own: the killed
    run never showed them (it shows a page only once its spool entry is cleared).
    """
    spool.sweep()
    for lost_batch, numbers in spool.forget_lost().items():
        if lost_batch == batch_id:
            continue                # being resumed: the operator fed the sheet status named
        kept = station.store.batch(lost_batch).next_n - 1
        station.store.interrupt(lost_batch, f"the station lost power (or was reset) before pages {numbers[0]}–"
                                f"{numbers[-1]} were stored; {feed_again(station.store.db, lost_batch, kept)}")
    stored = 0
    for sheet in _sheets(spool.waiting()):
        records = {}
        with atomic(station.store.db):  # a sheet's pages together, as the capture line stores them
            for entry in sheet:
                found = [p for p in station.store.pages(entry.batch_id) if p["n"] == entry.n]
                if found:
                    records[entry.n] = json.loads(found[0]["record_json"])
                    continue
                raw = spool.load(entry.batch_id, entry.n)
                page = process_page(raw.image, raw.dpi, station.config.pipeline, raw.dpi_source)
                if raw.area_mm:
                    page.record["extent_mm"] = extent_mm(raw, page)
                station.store.add_page(entry.batch_id, entry.n, page)
                records[entry.n] = page.record
                stored += 1
        for entry in sheet:
            spool.done(entry.batch_id, entry.n)
            if on_page and entry.batch_id == batch_id:
                on_page(entry.n, records[entry.n])
    return stored


def _sheets(entries: list[Spooled]) -> list[list[Spooled]]:
    """Spooled pages grouped by sheet: a back goes with the front spooled just before it."""
    sheets: list[list[Spooled]] = []
    for entry in entries:
        last = sheets[-1][-1] if sheets else None
        if (entry.side == "back" and last is not None and last.side == "front" and len(sheets[-1]) == 1
                and (last.batch_id, last.n + 1) == (entry.batch_id, entry.n)):
            sheets[-1].append(entry)
        else:
            sheets.append([entry])
    return sheets


def _capture(station: Station, spool: Spool, batch_id: str, n: int, source: Source, result: ScanResult,
             on_page) -> int:
    """Run the capture loop with the processing line behind it; the number the next page would get.

    On a duplex feed a sheet is kept whole or not at all: its front waits (in its spool file, no row
    naming it yet) for its back.
    A fault between the two sides loses the front too, and the operator feeds that sheet again —
    kept, its front would be captured a second time under the next number.
    """
    duplex = bool(getattr(source, "duplex", False))
    held = None                     # the front of the sheet in the scanner, until its back arrives
    with _Line(station, spool, batch_id, station.config.pipeline, result, on_page) as line:
        pages = source.pages()
        try:
            while True:
                line.wait_for_room()
                t0 = time.perf_counter()
                raw = next(pages, None)
                result.capture_s += time.perf_counter() - t0
                if raw is None:
                    break
                if duplex and held is None:
                    held = line.stage(n, raw)   # on the disk while the back is scanned, not in memory
                    raw = None
                    continue
                sheet = [held, raw] if held is not None else [raw]
                line.put(n, sheet)
                n += len(sheet)
                held = raw = sheet = None  # the spool has them: hold no second copy while the scanner feeds
            if held is not None:    # the feed ended on a front: a back the scanner itself left out
                line.put(n, [held])
                held = None
                n += 1
        except ScannerError as exc:
            line.finish()           # everything captured before the fault is stored, then it is reported
            lost = (f"page {n} was read but not the back of its sheet, so neither side is kept: feed that whole "
                    "sheet again" if held is not None else "")
            err = exc.at(n, lost)
            if held is not None:
                held.path.unlink(missing_ok=True)   # the front's file: no row names it, the sheet is fed again
            station.store.interrupt(batch_id, str(err))
            raise err from None
        line.finish()
    return n


class _Line:
    """Workers that process spooled pages, and a store thread that writes them in page order."""

    def __init__(self, station: Station, spool: Spool, batch_id: str, config: PipelineConfig,
                 result: ScanResult, on_page):
        self.station, self.spool, self.batch_id, self.config = station, spool, batch_id, config
        self.result, self.on_page = result, on_page
        workers = config.workers or default_workers(len(os.sched_getaffinity(0)))
        # At least two: a duplex sheet's front waits for its back before either is queued.
        self.room = threading.Semaphore(max(2, config.spool_pages or workers + 2))
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="quire-process")
        self.queue: queue.Queue = queue.Queue()
        self.failure: BaseException | None = None
        self.lock = threading.Lock()
        self.writer = threading.Thread(target=self._store_in_order, name="quire-store")
        self.writer.start()
        self.finished = False

    def __enter__(self) -> "_Line":
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if not self.finished:
            # Leaving on an error: stop; whatever was not stored stays spooled for the next run.
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.queue.put(None)
            self.writer.join()

    def wait_for_room(self) -> None:
        """Block (holding the scanner back) until the spool has room for one more page."""
        started = time.perf_counter()
        while not self.room.acquire(timeout=0.1):
            self._raise_failure()
        self.result.held_s += time.perf_counter() - started
        self._raise_failure()

    def stage(self, n: int, raw: RawPage) -> Staged:
        """Write a duplex sheet's front to its spool file while the scanner reads the back."""
        started = time.perf_counter()
        staged = self.spool.stage(self.batch_id, n, raw)
        with self.lock:
            self.result.store_s += time.perf_counter() - started
        return staged

    def put(self, n: int, sheet: list[RawPage | Staged]) -> None:
        """Spool a sheet's pages (numbered from ``n``) together, then queue them for processing."""
        started = time.perf_counter()
        self.spool.put(self.batch_id, n, sheet)
        with self.lock:
            self.result.store_s += time.perf_counter() - started
            self.result.pages += len(sheet)
            self.result.raw_bytes += sum(raw.nbytes if isinstance(raw, Staged) else raw.image.nbytes
                                         for raw in sheet)
        self._raise_failure()
        futures = []
        for number in range(n, n + len(sheet)):
            try:
                futures.append(self.pool.submit(self._process, number))
            except RuntimeError:    # the store thread failed and stopped the pool just now
                self._raise_failure()
                raise
        self.queue.put((n, futures))

    def finish(self) -> None:
        """Wait until every queued page is stored; raise what went wrong on the way."""
        self.finished = True
        self.queue.put(None)
        self.writer.join()
        self.pool.shutdown(wait=True)
        self._raise_failure()

    def _process(self, n: int) -> ProcessedPage:
        raw = self.spool.load(self.batch_id, n)
        started = time.perf_counter()
        # The pixels are handed over, not lent: the pipeline lets the captured page go once the output is
        # rendered, so a worker encodes holding one full-size image, not two (bench.station's peak).
        dpi, dpi_source, area_mm, shape, pixels = raw.dpi, raw.dpi_source, raw.area_mm, raw.image.shape, [raw.image]
        del raw
        page = process_taken(pixels.pop, dpi, self.config, dpi_source)
        if area_mm:
            page.record["extent_mm"] = _extent(area_mm, shape, page)
        with self.lock:
            self.result.process_s += time.perf_counter() - started
        release_free_heap()  # what encoding the page left in this worker's heap (quire.memory)
        return page

    def _store_in_order(self) -> None:
        while (item := self.queue.get()) is not None:
            n, futures = item
            try:
                if self.failure is None:
                    self._store(n, futures)
            except BaseException as exc:  # handed to the capture thread, which raises it
                self.failure = exc
                self.pool.shutdown(wait=False, cancel_futures=True)
            finally:
                self.room.release(len(futures))

    def _store(self, n: int, futures: list[Future]) -> None:
        pages = [future.result() for future in futures]
        started = time.perf_counter()
        # A sheet's pages are stored together: after a power cut, which took the spool, the stored pages
        # end at a sheet boundary and the operator feeds whole sheets again.
        with atomic(self.station.store.db):
            for i, page in enumerate(pages):
                self.station.store.add_page(self.batch_id, n + i, page)
        for i in range(len(pages)):
            self.spool.done(self.batch_id, n + i)
        with self.lock:
            self.result.store_s += time.perf_counter() - started
            self.result.bytes += sum(len(page.data) for page in pages)
            self.result.records.extend(page.record for page in pages)
        for i, page in enumerate(pages):
            if self.on_page:
                self.on_page(n + i, page.record)

    def _raise_failure(self) -> None:
        if self.failure is not None:
            raise self.failure


# -- a whole dossier in one feed, split at cover sheets ------------------------------------------


class CoverSheetRefused(UsageError):
    """A cover sheet in the feed that the station will not bind: another dossier's, one seen twice,
    a material already sealed, or a feed that does not start with one (the stack is not as it should be).

    ``kind`` and ``facts`` say which, for a screen that words it in its own language."""

    def __init__(self, message: str, kind: str = "", **facts):
        super().__init__(message)
        self.kind, self.facts = kind, facts


@dataclass
class DossierScan:
    archive_no: str
    materials: list[ScanResult] = field(default_factory=list)   # one per material, in feed order
    sheets: int = 0                                             # cover sheets read


def scan_dossier(station: Station, dossier: dict, directory: list[dict] | None = None,
                 source: "str | Source | None" = None, operator: str | None = None,
                 on_page: Callable[[int, dict], None] | None = None,
                 on_material: Callable[[dict], None] | None = None,
                 on_done: Callable[[ScanResult], None] | None = None,
                 first_feed_page: int = 1, review: bool = False) -> DossierScan:
    """Scan a whole dossier fed as one stack, split at its cover sheets: each part is one material,
    captured, stored and sealed like ``scan``; the sheet's image (both sides on a duplex feed) is kept in
    its bundle as evidence.

    ``directory`` lists the dossier's materials in order (dicts with item, title …): it gives a
    generic "next material" sheet its material, and the fields a sheet does not carry. Pages before
    the first sheet continue the dossier's interrupted batch (a feed resumed after a fault). A material
    whose page count differs from the directory is kept open for review and the feed goes on.
    ``first_feed_page`` numbers a resumed feed's pages on from where the stopped one ended (a source that
    can be told, like a folder, starts there); a scanner fault raised from here carries ``feed_resume_at``,
    the feed page to put back on top. ``review`` keeps every material open for review.
    """
    cfg = station.config
    archive_no = dossier.get("archive_no")
    if not archive_no:
        raise UsageError("a dossier archive number (档号) is required: --dossier D-0001")
    if source is None or isinstance(source, str):
        source = open_source(source or cfg.source, cfg.dpi, cfg.sane_options, cfg.scanner_page_timeout_s)
    if first_feed_page > 1 and hasattr(source, "resume_at"):
        source.resume_at(first_feed_page)
    feed = _CoverFeed(source, first_feed_page)
    out = DossierScan(archive_no)
    bound = [b["item"] for b in station.store.batches() if b["archive_no"] == archive_no]
    part = None
    try:
        material = _interrupted_material(station, archive_no)
        while True:
            if material is None:
                sheet = feed.next_sheet()
                if sheet is None:
                    if feed.taken == 0:
                        raise FeederEmpty().at(1)
                    break
                material = _bind(station, dossier, directory or [], sheet, feed, bound)
                bound.append(material["item"])
                out.sheets += 1
            if on_material:
                on_material(material)
            part = _Part(feed)
            wanted = dict(material, review=True) if review else material
            try:
                result = scan(station, dossier, wanted, part, operator, on_page, hold_on_mismatch=True)
            except FeederEmpty:
                # A sheet with no pages after it: nothing to seal. The feed ended, or the next sheet follows.
                item = material["item"]
                if feed.pending is None:
                    raise CoverSheetRefused(
                        f"cover sheet for material {item} (feed page {feed.fed}) is the last page "
                        "fed: no pages follow it; feed that material's pages after its sheet",
                        "empty-last", item=item, feed_page=feed.fed) from None
                raise CoverSheetRefused(
                    f"cover sheet for material {item} (feed page {feed.pending[1]}) is followed at "
                    f"once by another cover sheet: put material {item}'s pages between them and "
                    "feed from its sheet", "empty-between", item=item, feed_page=feed.pending[1]) from None
            out.materials.append(result)
            if on_done:
                on_done(result)
            material = part = None
            if feed.pending is None and feed.ended:
                break
    except ScannerError as exc:
        # Where the operator puts the stack back: the page after the last one taken, or a sheet's first side
        # when its second was not read (neither side is kept, the sheet is fed again).
        lost = feed.taking or (part is not None and feed.duplex and part.yielded % 2 == 1)
        exc.feed_resume_at = feed.fed + 1 - int(bool(lost))
        raise
    finally:
        source.close()
    return out


def _interrupted_material(station: Station, archive_no: str) -> dict | None:
    """The material of the dossier's interrupted batch, which pages fed before any sheet continue (one
    kept for review is not: it waits for the operator's confirmation or rescan)."""
    unsealed = [b for b in station.store.batches() if b["archive_no"] == archive_no
                and b["state"] in ("open", "interrupted")]
    return json.loads(unsealed[-1]["material_json"]) if unsealed else None


def _bind(station: Station, dossier: dict, directory: list[dict], found, feed: "_CoverFeed",
          bound: list[str]) -> dict:
    """The material a cover sheet starts, with its image stored as evidence; refuse what does not belong."""
    from .coversheet import Sheet

    raw, number, hit, back = found
    sheet: Sheet = hit.sheet
    archive_no = dossier["archive_no"]
    where = f"feed page {number}"
    if sheet.archive_no and sheet.archive_no != archive_no:
        raise CoverSheetRefused(
            f"the cover sheet at {where} is for dossier {sheet.archive_no}, not {archive_no}: take it and the "
            f"pages after it out of the stack (they belong to {sheet.archive_no}) and feed the rest again",
            "other-dossier", feed_page=number, other=sheet.archive_no, dossier=archive_no)
    item = sheet.item
    if sheet.generic:
        left = [m for m in directory if m["item"] not in bound]
        if not left:
            why = ("every material of its directory is bound" if directory
                   else f"this station has no directory of {archive_no}")
            raise CoverSheetRefused(
                f"a 'next material' cover sheet at {where}, but {why}: use the material's own cover sheet "
                "('quire-station coversheets' prints it) or import the dossier's directory",
                "generic-none-left", feed_page=number, dossier=archive_no)
        item = left[0]["item"]
    if item in feed.seen:
        raise CoverSheetRefused(
            f"the cover sheet for material {item} at {where} was already read at feed page {feed.seen[item]}: "
            "take the second one out (and check the pages after it belong where they were put) and feed again "
            "from there", "seen-twice", item=item, feed_page=number, first_page=feed.seen[item])
    feed.seen[item] = number
    previous = [b for b in station.store.batches() if b["archive_no"] == archive_no and b["item"] == item]
    if previous and previous[-1]["state"] == "sealed":
        raise CoverSheetRefused(
            f"the cover sheet at {where} is for material {item} of {archive_no}, which is already sealed on this "
            "station: take that sheet and its pages out of the stack (a rescan is asked for with 'scan "
            "--rescan'), and feed the rest again", "sealed", item=item, feed_page=number, dossier=archive_no)
    entry = next((m for m in directory if m["item"] == item), {})
    material = {"item": item, "title": entry.get("title") or sheet.title}
    for key in ("date_formed", "remarks"):
        if entry.get(key):
            material[key] = entry[key]
    material["cover_sheet"] = dict(_evidence(station, raw), payload=hit.text, generic=sheet.generic,
                                   feed_page=number)
    if back is not None:    # the sheet's other side: evidence too, never a page of the material
        material["cover_sheet"]["back"] = dict(_evidence(station, back), feed_page=number + 1)
    return material


def _evidence(station: Station, raw: RawPage) -> dict:
    """A cover sheet's side stored as it was scanned (grey JPEG), as the manifest lists it."""
    data = encode(raw.image, "grey", raw.dpi, station.config.pipeline.jpeg_quality).data
    return {"sha256": station.store.jpeg.put(data), "bytes": len(data), "media_type": "image/jpeg",
            "width_px": raw.image.shape[1], "height_px": raw.image.shape[0], "dpi": raw.dpi}


class _CoverFeed:
    """The source's pages, with the cover sheets taken out as they pass (on a duplex feed, with their backs)."""

    def __init__(self, source: Source, first_feed_page: int = 1):
        self.source = source
        self.duplex = bool(getattr(source, "duplex", False))
        self.pages = source.pages()
        self.pending = None         # (raw, feed page, Found, back): the sheet that ended the last part
        self.fed = first_feed_page - 1  # the feed page last taken from the source (numbered on over a resume)
        self.taken = 0              # pages taken by this run
        self.taking = False         # a sheet's back is being read: a fault now loses the sheet's front too
        self.ended = False
        self.seen: dict[str, int] = {}

    def next_raw(self) -> RawPage | None:
        if self.ended:
            return None
        raw = next(self.pages, None)
        if raw is None:
            self.ended = True
            return None
        self.fed += 1
        self.taken += 1
        return raw

    def next_sheet(self):
        """The cover sheet that comes next (the one pending, else the first page, which must be one)."""
        if self.pending is not None:
            found, self.pending = self.pending, None
            return found
        raw = self.next_raw()
        if raw is None:
            return None
        hit = find_sheet(raw.image, raw.dpi)
        if hit is None:
            raise CoverSheetRefused(
                f"feed page {self.fed} is not a cover sheet, and no material of this dossier is waiting to be "
                "resumed: put the first material's cover sheet on top of the stack ('quire-station coversheets' "
                "prints them) and feed it all again", "no-sheet-first", feed_page=self.fed)
        return self._take(raw, hit)

    def _take(self, raw: RawPage, hit):
        number, back = self.fed, None
        if self.duplex:             # the sheet's back: kept with the sheet as evidence, not as a page
            self.taking = True
            back = self.next_raw()
            self.taking = False
        return (raw, number, hit, back)


class _Part:
    """The pages of one material: the feed's pages up to the next cover sheet (a Source for ``scan``)."""

    def __init__(self, feed: _CoverFeed):
        self.feed = feed
        self.name = feed.source.name
        self.duplex = feed.duplex
        self.yielded = 0

    def pages(self):
        while (raw := self.feed.next_raw()) is not None:
            # On a duplex feed only a front can be a sheet: a back is looked at only through its front.
            front = not self.duplex or raw.side != "back"
            hit = find_sheet(raw.image, raw.dpi) if front else None
            if hit is not None:
                self.feed.pending = self.feed._take(raw, hit)
                return
            self.yielded += 1
            yield raw

    def close(self) -> None:
        pass                        # the feed goes on: scan_dossier closes the source at the end
