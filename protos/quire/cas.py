"""Content-addressed, write-once files named by SHA-256 (station page store, central blob store)."""

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator

_HEX64 = re.compile(r"[0-9a-f]{64}")


def is_sha256_hex(value: str) -> bool:
    """True for a lower-case 64-digit hex SHA-256."""
    return bool(_HEX64.fullmatch(value))


def _sha256_hex(value: str) -> str:
    if not is_sha256_hex(value):
        raise ValueError(f"must be a SHA-256 in 64 lower-case hex digits (got {value!r})")
    return value


Sha256Hex = Annotated[str, AfterValidator(_sha256_hex)]   # a declared model's field holding a hex SHA-256


def fsync_dir(path: Path) -> None:
    """Make a rename or create inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ContentStore:
    """A directory of immutable files, each named by the SHA-256 of its bytes."""

    def __init__(self, root: Path, suffix: str = ""):
        self.root = Path(root)
        self.suffix = suffix
        self.tmp = self.root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        """Where the blob with this digest lives (whether or not it exists)."""
        if not is_sha256_hex(sha256):
            raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / (sha256 + self.suffix)

    def has(self, sha256: str) -> bool:
        """True when the blob is stored."""
        return self.path(sha256).exists()

    def put(self, data: bytes) -> str:
        """Store ``data`` durably (temp file, fsync, rename, fsync dir); return its digest."""
        digest = hashlib.sha256(data).hexdigest()
        final = self.path(digest)
        if final.exists():
            return digest
        fd, tmp_name = tempfile.mkstemp(dir=self.tmp, prefix=digest[:16] + ".")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            self.adopt(Path(tmp_name), digest)
        finally:
            Path(tmp_name).unlink(missing_ok=True)
        return digest

    def adopt(self, tmp_path: Path, sha256: str) -> Path:
        """Rename an fsynced temp file (already checked to hash to ``sha256``) into place."""
        (final,) = self.adopt_many([(tmp_path, sha256)])
        return final

    def adopt_many(self, files: list[tuple[Path, str]]) -> list[Path]:
        """Rename fsynced temp files (each checked to hash to its digest) into place, then make the
        renames durable with one fsync per directory: on a journalling filesystem the first of those
        commits them all, so a group costs about what one file does."""
        finals, new_folder = [], False
        for tmp_path, sha256 in files:
            final = self.path(sha256)
            if not final.parent.is_dir():
                final.parent.mkdir(exist_ok=True)
                new_folder = True
            os.chmod(tmp_path, 0o444)  # write-once: nothing in Quire opens a stored blob for writing
            os.replace(tmp_path, final)
            finals.append(final)
        for folder in dict.fromkeys(final.parent for final in finals):
            fsync_dir(folder)
        if new_folder:  # the folder's own name must survive a power cut too
            fsync_dir(self.root)
        return finals

    def rehash(self, sha256: str, chunk_bytes: int = 1 << 20) -> str | None:
        """SHA-256 of the stored bytes (None when missing), for full verification."""
        h = hashlib.sha256()
        try:
            with open(self.path(sha256), "rb") as fh:
                while chunk := fh.read(chunk_bytes):
                    h.update(chunk)
        except FileNotFoundError:
            return None
        return h.hexdigest()
