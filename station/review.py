"""Pre-seal review: rescan one page, insert a missed one, remove a stray one, confirm a page count, seal.

For the kiosk and the CLI alike. Every edit is one transaction with its record (what, which page,
why, who, when; a replaced or removed page's hash kept as evidence), written after the new page's
file is fsynced, so a kill at any moment leaves the batch as it was before the edit or after it.
The edits go into the signed manifest when the batch is sealed; after that nothing changes.

A batch reaches review when a scan was asked to keep it open (``material["review"] = True``, the
``--review`` option, or ``review_before_seal`` in station.toml), or when its page count differs from
the dossier's directory. :func:`seal` seals it; a differing count needs ``confirm_reason``.
"""

import json
from dataclasses import dataclass

from quire.db import utcnow
from quire.manifest import count_matches

from . import outbox
from .capture import Source, open_source
from .errors import FeederEmpty, StoreError, UsageError
from .home import Station
from .pipeline import process_page
from .scan import extent_mm


class ReviewRefused(StoreError):
    """The batch cannot be edited as asked (sealed, none such, pages still spooled)."""


@dataclass(frozen=True)
class Review:
    """An unsealed batch as the operator reviews it."""

    batch: dict
    pages: list[dict]
    edits: list[dict]
    expected: int | None        # pages the directory lists, when it has the material

    @property
    def blank(self) -> int:
        """Pages flagged blank (a directory's 页数 leaves them out)."""
        return sum(1 for p in self.pages if json.loads(p["record_json"]).get("blank"))

    @property
    def mismatch(self) -> bool:
        """The page count differs from the directory's, as sealing judges it."""
        return self.expected is not None and not count_matches(
            {"expected": self.expected, "found": len(self.pages), "blank": self.blank})


def find(station: Station, archive_no: str, item: str) -> dict:
    """The material's batch that is not sealed yet; a clear refusal when it is sealed or was never scanned."""
    batch = station.store.unsealed_batch(archive_no, item)
    if batch is not None:
        return batch
    last = station.store.last_batch(archive_no, item)
    if last is None:
        raise ReviewRefused(f"{archive_no} {item} has not been scanned on this station; scan it first")
    raise ReviewRefused(f"{archive_no} {item} is sealed; nothing changes after sealing (its signed bundle is what "
                        "the archive receives) — if a page is wrong, scan the material again with --rescan and the "
                        "archive's archivists replace it")


def show(station: Station, archive_no: str, item: str) -> Review:
    batch = find(station, archive_no, item)
    entry = station.store.directory_entry(archive_no, item)
    return Review(batch, station.store.pages(batch["id"]), station.store.edits(batch["id"]),
                  entry["pages"] if entry else None)


def rescan_page(station: Station, archive_no: str, item: str, n: int, operator: str, reason: str = "",
                source: "str | Source | None" = None) -> dict:
    """Capture one page from ``source`` (default the configured scanner) in place of page ``n``."""
    batch = _editable(station, archive_no, item)
    _exists(station, batch, n)
    page = _capture_one(station, source)
    return station.store.replace_page(batch["id"], n, page, _edit(operator, reason or "rescanned"))


def insert_page(station: Station, archive_no: str, item: str, after: int, operator: str, reason: str = "",
                source: "str | Source | None" = None) -> dict:
    """Capture one page from ``source`` and put it after page ``after`` (0: first)."""
    batch = _editable(station, archive_no, item)
    last = len(station.store.pages(batch["id"]))
    if not 0 <= after <= last:
        raise UsageError(f"there is no page {after} to insert after: {archive_no} {item} has pages 1–{last} "
                         "(--after 0 puts the page first)")
    page = _capture_one(station, source)
    return station.store.insert_page(batch["id"], after, page, _edit(operator, reason or "missed page inserted"))


def remove_page(station: Station, archive_no: str, item: str, n: int, operator: str, reason: str) -> dict:
    """Take page ``n`` out (a double feed, a stray sheet); its hash stays in the record."""
    if not reason or not reason.strip():
        raise UsageError("say why the page is removed (--reason, e.g. \"double feed\" or \"stray sheet\"): the "
                         "reason goes into the signed bundle")
    batch = _editable(station, archive_no, item)
    _exists(station, batch, n)
    if len(station.store.pages(batch["id"])) == 1:
        raise UsageError(f"page {n} is the only page of {archive_no} {item}; rescan it instead of removing it")
    return station.store.remove_page(batch["id"], n, _edit(operator, reason.strip()))


def seal(station: Station, archive_no: str, item: str, operator: str, confirm_reason: str | None = None) -> str:
    """Seal the reviewed batch into a signed bundle; a count that differs from the directory needs
    ``confirm_reason`` (recorded in the manifest with the operator and the time)."""
    batch = _editable(station, archive_no, item)
    confirmation = None
    if confirm_reason is not None:
        if not confirm_reason.strip():
            raise UsageError("the reason for confirming the page count is empty; say why the directory's count is "
                             "not the scanned one, e.g. \"目录页数有误，实为 11 页\"")
        found = len(station.store.pages(batch["id"]))
        confirmation = {"reason": confirm_reason.strip(), "operator": operator, "at": utcnow(), "found": found}
        station.store.confirm_count(batch["id"], confirmation)
    bundle_id = outbox.seal_batch(station.store, batch["id"], station.station_id, station.key, review=True,
                                  confirmation=confirmation)
    if bundle_id is None:   # review=True seals or raises; None would mean the batch was held again
        raise ReviewRefused(f"{archive_no} {item} was not sealed; 'quire-station review show' says why")
    return bundle_id


def _editable(station: Station, archive_no: str, item: str) -> dict:
    batch = find(station, archive_no, item)
    if batch["state"] == "open":
        raise ReviewRefused(f"{archive_no} {item} is being scanned (or its scan was killed): wait until it ends, "
                            "or run the same scan again to finish it, then review the batch")
    waiting = station.store.spooled(batch["id"])
    if waiting:
        raise ReviewRefused(f"{archive_no} {item} has {waiting} captured page(s) not stored yet (a scan was "
                            "stopped); run the same scan again to store them, then review the batch")
    return batch


def _exists(station: Station, batch: dict, n: int) -> None:
    last = len(station.store.pages(batch["id"]))
    if not 1 <= n <= last:
        raise UsageError(f"there is no page {n}: {batch['archive_no']} {batch['item']} has pages 1–{last}")


def _edit(operator: str, reason: str) -> dict:
    return {"operator": operator or "", "reason": reason}


def _capture_one(station: Station, source: "str | Source | None"):
    """One page from the source, through the same pipeline as a scan; the source is closed after."""
    cfg = station.config
    if source is None or isinstance(source, str):
        source = open_source(source or cfg.source, cfg.dpi, cfg.sane_options, cfg.scanner_page_timeout_s)
    try:
        raw = next(source.pages(), None)
    finally:
        source.close()
    if raw is None:
        raise FeederEmpty("no page came from the scanner; put the one page in the feeder and try again")
    page = process_page(raw.image, raw.dpi, cfg.pipeline, raw.dpi_source)
    if raw.area_mm:
        page.record["extent_mm"] = extent_mm(raw, page)
    return page
