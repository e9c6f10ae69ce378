"""Resumable uploads into the blob store, shared by stations' and the primary's Write streams: each
chunk checked against its CRC-32C and appended at its offset, finished blobs stored in groups on a
thread of their own and recorded in the catalogue."""

import contextlib
import queue
import threading
from dataclasses import dataclass

import google_crc32c

from quire.db import utcnow

from .archive import Archive
from .errors import BlobRejected, UploadDamaged
from .store import blob_index


@dataclass
class Written:
    """What one Write stream achieved: every blob it completed, and where its last blob stands."""

    size: int
    complete: bool
    completed: list[str]


def write_blob(archive: Archive, station_id: str, sha256: str, declared: int, msg, chunks, finisher,
               recorded: bool | None = None):
    """Append one blob's chunks from ``msg`` on and hand a finished one to ``finisher`` to store;
    return (size, its finishing message or None). ``recorded``: whether the catalogue records the blob,
    when the caller asked already (else asked here)."""
    # Another station's copy arrived meanwhile: skip this one's bytes. Arrived copies are recorded, so only
    # a recorded blob is looked up in the store (a blob stored but not recorded is sent again, and found
    # there when it is stored; one recorded but lost is taken again).
    if recorded is None:
        recorded = blob_index.has(archive.catalogue, sha256)
    if recorded and archive.blobs.has(sha256):
        while msg is not None and not msg.finish_write:
            msg = next(chunks, None)
        return declared, msg
    upload, handed_over = archive.blobs.open_upload(station_id, sha256, declared), False
    try:
        while msg is not None:
            # Read once: each access of a bytes field copies it (a whole chunk, every time).
            data = msg.data
            check_crc(sha256, msg, data)
            if data:
                upload.append(msg.write_offset, data)
            if msg.finish_write:
                finisher.submit(upload)
                handed_over = True
                return declared, msg
            msg = next(chunks, None)
        return upload.size, None
    finally:
        if not handed_over:  # broken off or refused: the partial keeps its last whole chunk, to resume
            upload.close()


class GroupCommit:
    """Stores a Write stream's finished blobs on a thread of its own, each time all that have
    queued up together: their files flushed, their digests checked, renamed into the store with
    one directory flush per folder and recorded in one catalogue transaction. When the disk is
    slow to flush, groups grow instead of the stream waiting on one blob after another."""

    def __init__(self, archive: Archive):
        self.archive = archive
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._refused: dict[str, BaseException] = {}
        self._order: list[str] = []
        self._thread = threading.Thread(target=self._run, name="quire-blob-finish", daemon=True)
        self._thread.start()

    def submit(self, upload) -> None:
        self._order.append(upload.sha256)
        self._queue.put(upload)

    def close(self) -> None:
        """Wait until every submitted blob is stored or refused; raise the first refusal."""
        self._queue.put(None)
        self._thread.join()
        for sha256 in self._order:
            if sha256 in self._refused:
                raise self._refused[sha256]

    def _run(self) -> None:
        ending = False
        while not ending:
            group = [self._queue.get()]
            while True:
                try:
                    group.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            ending = group[-1] is None
            uploads = [upload for upload in group if upload is not None]
            if uploads:
                self._store(uploads)

    def _store(self, uploads: list) -> None:
        try:
            refused = self.archive.blobs.finish_many(uploads)
            stored = [u for u in uploads if u.sha256 not in refused]
            if stored:
                with self.archive.catalogue.transaction() as db:
                    for upload in stored:
                        record_blob(db, upload.sha256, upload.limit, upload.sm3)
        except BaseException as exc:  # noqa: BLE001 - raised on the stream's thread by close()
            # Noted before anything else can fail: a refusal lost here would let the Write call answer
            # as if these blobs were stored.
            self._refused.update({u.sha256: exc for u in uploads})
            for upload in uploads:
                with contextlib.suppress(OSError):
                    upload.close()
            return
        self._refused.update(refused)


def record_blob(db, sha256: str, size: int, sm3: str) -> None:
    """Record a stored blob in the catalogue, inside the caller's transaction (once per blob)."""
    blob_index.record(db, sha256, size, sm3, utcnow())


def check_crc(sha256: str, msg, data: bytes) -> None:
    if not msg.HasField("data_crc32c"):
        raise BlobRejected(f"blob {sha256[:12]}: the chunk at offset {msg.write_offset} carries no data_crc32c; "
                           "every chunk must (update the station)")
    found = google_crc32c.value(data)
    if found != msg.data_crc32c:
        raise UploadDamaged(f"blob {sha256[:12]}: the chunk at offset {msg.write_offset} arrived damaged (CRC-32C "
                            f"{found:08x}, the station sent {msg.data_crc32c:08x}); nothing of it was "
                            "written, send it again from the committed offset")
