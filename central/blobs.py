"""The central blob store: write-once files named by SHA-256, filled by resumable uploads."""

import hashlib
import os
from pathlib import Path

from quire.cas import ContentStore

from .errors import BlobRejected, UploadDamaged, WrongOffset


class BlobStore:
    """Stored blobs plus the partial uploads that will become blobs once their hash checks out."""

    def __init__(self, blobs_dir: Path, uploads_dir: Path):
        self.files = ContentStore(blobs_dir)
        self.uploads = uploads_dir
        self.uploads.mkdir(parents=True, exist_ok=True)

    def has(self, sha256: str) -> bool:
        return self.files.has(sha256)

    def path(self, sha256: str) -> Path:
        return self.files.path(sha256)

    def partial(self, station_id: str, sha256: str) -> Path:
        # One partial per station and blob: two stations sending the same page never collide.
        return self.uploads / f"{sha256}.{station_id}.part"

    def committed_size(self, station_id: str, sha256: str) -> int:
        try:
            return self.partial(station_id, sha256).stat().st_size
        except FileNotFoundError:
            return 0

    def open_upload(self, station_id: str, sha256: str, limit: int) -> "Upload":
        """Append access to one partial upload, for the chunks of one Write stream."""
        return Upload(self.partial(station_id, sha256), sha256, limit)

    def finish(self, station_id: str, sha256: str, expected_bytes: int, found: str) -> None:
        """Check the complete upload's size and ``found`` (the digest the upload computed as its bytes
        arrived), then move it into the store for good."""
        path = self.partial(station_id, sha256)
        size = path.stat().st_size
        if found != sha256 or size != expected_bytes:
            # A corrupt upload is never kept, never half-visible. Either the station's copy is damaged
            # or this partial file is (bytes not yet on disk when the archive lost power): the station
            # checks its copy and, if that is intact, sends the blob again from the start.
            path.unlink(missing_ok=True)
            raise UploadDamaged(
                f"blob {sha256}: received {size} bytes hashing to {found}, but the manifest lists "
                f"{expected_bytes} bytes with that digest; the upload was discarded, send it again from offset 0"
            )
        self.files.adopt(path, sha256)


class Upload:
    """One open partial upload: chunks must arrive at exactly the committed offset.

    Data is fsynced every ``sync_every`` bytes and when the stream ends, so a crash loses at most
    that much, which the station simply re-sends from the offset the file then has.
    """

    sync_every = 8 << 20

    def __init__(self, path: Path, sha256: str, limit: int):
        self.path, self.sha256, self.limit = path, sha256, limit
        self.fh = open(path, "ab")
        self.size = self.fh.tell()
        self._unsynced = 0
        # Hash as the bytes arrive; a resumed upload first hashes what the earlier streams left.
        self._hash = hashlib.sha256()
        if self.size:
            with open(path, "rb") as prefix:
                while chunk := prefix.read(1 << 20):
                    self._hash.update(chunk)

    def append(self, offset: int, data: bytes) -> int:
        """Append a chunk at exactly ``offset``; return the new size. Refuse gaps and overruns."""
        if offset != self.size:
            raise WrongOffset(
                f"blob {self.sha256[:12]}: write at offset {offset} but {self.size} bytes are committed; "
                "query the write status and resume from there"
            )
        if self.size + len(data) > self.limit:
            raise BlobRejected(
                f"blob {self.sha256[:12]}: {self.size + len(data)} bytes sent but the manifest says {self.limit}"
            )
        try:
            self.fh.write(data)
            self._hash.update(data)
            self._unsynced += len(data)
            if self._unsynced >= self.sync_every:
                self.sync()
        except OSError:
            # Disk full mid-chunk: cut back to the last whole chunk so the resume point is exact.
            self.fh.truncate(self.size)
            raise
        self.size += len(data)
        return self.size

    @property
    def digest(self) -> str:
        return self._hash.hexdigest()

    def sync(self) -> None:
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self._unsynced = 0

    def close(self) -> None:
        try:
            if self._unsynced:
                self.sync()
        finally:
            self.fh.close()

    def __enter__(self) -> "Upload":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
