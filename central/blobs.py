"""The central blob store: write-once files named by SHA-256, filled by resumable uploads."""

import hashlib
import os
from pathlib import Path

from quire.cas import ContentStore

from .errors import BlobRejected, WrongOffset


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

    def append(self, station_id: str, sha256: str, offset: int, data: bytes, limit: int) -> int:
        """Append a chunk at exactly ``offset``; return the new size. Refuse gaps and overruns."""
        path = self.partial(station_id, sha256)
        with open(path, "ab") as fh:
            size = fh.tell()
            if offset != size:
                raise WrongOffset(
                    f"blob {sha256[:12]}: write at offset {offset} but {size} bytes are committed; "
                    "query the write status and resume from there"
                )
            if size + len(data) > limit:
                raise BlobRejected(
                    f"blob {sha256[:12]}: {size + len(data)} bytes sent but the manifest says {limit}"
                )
            try:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            except OSError:
                # Disk full mid-chunk: cut back to the last whole chunk so the resume point is exact.
                fh.truncate(size)
                raise
            return fh.tell()

    def finish(self, station_id: str, sha256: str, expected_bytes: int) -> None:
        """Check the complete upload's size and hash, then move it into the store for good."""
        path = self.partial(station_id, sha256)
        size = path.stat().st_size
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
        found = h.hexdigest()
        if found != sha256 or size != expected_bytes:
            path.unlink(missing_ok=True)  # a corrupt upload is never kept, never half-visible
            raise BlobRejected(
                f"blob {sha256}: received {size} bytes hashing to {found}, but the manifest lists "
                f"{expected_bytes} bytes with that digest; the station's copy does not match its manifest"
            )
        self.files.adopt(path, sha256)
