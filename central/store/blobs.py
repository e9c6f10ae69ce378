"""The central blob store: write-once blobs named by SHA-256, filled by resumable uploads; each blob's
SM3 (GB/T 32905, for 密评) is computed beside its SHA-256 as its bytes arrive. One interface, the
local directory behind it here (``blobs_s3`` holds the S3-compatible kind)."""

import errno
import fcntl
import hashlib
import mmap
import os
import threading
import time
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import BinaryIO

from cryptography.hazmat.primitives import hashes

from quire.cas import ContentStore, is_sha256_hex

from ..errors import BlobRejected, UploadDamaged, WrongOffset


def sm3(data: bytes = b""):
    """A new SM3 hash (GB/T 32905) of ``data``: OpenSSL's through hashlib, else ``cryptography``'s."""
    try:
        return hashlib.new("sm3", data)
    except ValueError:   # an OpenSSL built without SM3
        return _CryptographySm3(data)


class _CryptographySm3:
    """``cryptography``'s SM3 behind hashlib's update/hexdigest."""

    def __init__(self, data: bytes = b""):
        self._hash = hashes.Hash(hashes.SM3())
        self.update(data)

    def update(self, data) -> None:
        self._hash.update(bytes(data))

    def hexdigest(self) -> str:
        return self._hash.copy().finalize().hex()


class BlobStore(ABC):
    """Where page files live: write-once blobs named by SHA-256, and the partial uploads that become
    blobs once their hash checks out. Callers open, stat and put blobs by digest; no caller learns
    where or how they are kept (a directory here, an S3-compatible bucket in ``blobs_s3``)."""

    @abstractmethod
    def has(self, sha256: str) -> bool:
        """True when the blob is stored."""

    @abstractmethod
    def stat(self, sha256: str) -> int | None:
        """The stored blob's size in bytes; None when it is missing."""

    @abstractmethod
    def open(self, sha256: str) -> BinaryIO:
        """The stored blob for reading (seekable; close it); FileNotFoundError when it is missing."""

    @abstractmethod
    def put(self, data: bytes) -> str:
        """Store ``data`` once, durably; return its SHA-256. Storing it again changes nothing."""

    @abstractmethod
    def where(self, sha256: str) -> str:
        """Where the blob is (or would be) kept, for messages to an operator; never to be opened."""

    @abstractmethod
    def location(self) -> str:
        """Where the store keeps its blobs (a folder, a bucket and prefix), for messages to an operator."""

    @abstractmethod
    def sample(self, limit: int, after: str = "") -> list[str]:
        """The digests of up to ``limit`` stored blobs in digest order, from the first one past ``after`` (a
        digest; "" from the start): one page of a listing of them all; [] past the last one."""

    @abstractmethod
    def committed_size(self, station_id: str, sha256: str) -> int:
        """Bytes of ``station_id``'s partial upload of the blob that a resumed stream builds on."""

    def committed_sizes(self, station_id: str, digests: list[str]) -> list[int]:
        """``committed_size`` of each of ``digests``, in order (a store may answer all from one look)."""
        return [self.committed_size(station_id, sha) for sha in digests]

    @abstractmethod
    def open_upload(self, station_id: str, sha256: str, limit: int):
        """Append access to one partial upload, for the chunks of one Write stream (any process may
        resume what another left)."""

    @abstractmethod
    def finish_many(self, uploads: list) -> dict[str, Exception]:
        """Close completely received uploads, check each one's size and digest (computed as its bytes
        arrived) against the manifest, and store the good ones for good. Returns what went wrong by
        digest: a damaged upload is discarded; one whose bytes could not be kept stays to resume."""

    def rehash(self, sha256: str, chunk_bytes: int = 1 << 20) -> tuple[str, str] | None:
        """SHA-256 and SM3 of the stored bytes in one read (None when missing), for full verification."""
        h256, h_sm3 = hashlib.sha256(), sm3()
        try:
            with self.open(sha256) as fh:
                while chunk := fh.read(chunk_bytes):
                    h256.update(chunk)
                    h_sm3.update(chunk)
        except FileNotFoundError:
            return None
        return h256.hexdigest(), h_sm3.hexdigest()

    def close(self) -> None:
        """Let go of connections held for the store (nothing, for a directory)."""

    @staticmethod
    def damaged(sha256: str, size: int, digest: str, limit: int) -> UploadDamaged:
        # A corrupt upload is never kept, never half-visible. Either the station's copy is damaged or the
        # partial is (bytes not yet on disk when the archive lost power): the station checks its copy and,
        # if that is intact, sends the blob again from the start.
        return UploadDamaged(
            f"blob {sha256}: received {size} bytes hashing to {digest}, but the manifest lists {limit} bytes "
            "with that digest; the upload was discarded, send it again from offset 0")


class DiskBlobStore(BlobStore):
    """Blobs as write-once files in a local directory; partial uploads as files beside them, each
    written by one call at a time (a lock on the file, held by every serve process on this home)."""

    def __init__(self, blobs_dir: Path, uploads_dir: Path, lock_wait_s: float = 10.0):
        # How long a call waits for another that holds a partial (central.toml's upload_lock_wait_s): after
        # a cut, the broken call still writes the chunks it had queued. Past this the call is refused, and
        # the station retries.
        self.lock_wait_s = lock_wait_s
        self.files = ContentStore(blobs_dir)
        self.uploads = uploads_dir
        self.uploads.mkdir(parents=True, exist_ok=True)
        self.buffers = AlignedBuffers()

    def has(self, sha256: str) -> bool:
        return self.files.has(sha256)

    def stat(self, sha256: str) -> int | None:
        try:
            return self.files.path(sha256).stat().st_size
        except FileNotFoundError:
            return None

    def open(self, sha256: str) -> BinaryIO:
        return open(self.files.path(sha256), "rb")

    def put(self, data: bytes) -> str:
        return self.files.put(data)

    def where(self, sha256: str) -> str:
        return str(self.files.path(sha256))

    def location(self) -> str:
        return str(self.files.root)

    def sample(self, limit: int, after: str = "") -> list[str]:
        found = []
        for folder in sorted(p for p in self.files.root.iterdir() if len(p.name) == 2 and p.is_dir()):
            if folder.name < after[:2]:
                continue
            for blob in sorted(folder.iterdir()):
                if is_sha256_hex(blob.name) and blob.name > after:
                    found.append(blob.name)
                    if len(found) >= limit:
                        return found
        return found

    def _partial(self, station_id: str, sha256: str) -> Path:
        # One partial per station and blob: two stations sending the same page never collide.
        return self.uploads / f"{sha256}.{station_id}.part"

    def committed_size(self, station_id: str, sha256: str) -> int:
        # Read under the writers' lock: a call still writing this partial is never ahead of the answer.
        fd = self._lock(station_id, sha256, exclusive=False)
        if fd is None:
            return 0
        try:
            return os.fstat(fd).st_size
        finally:
            os.close(fd)

    def open_upload(self, station_id: str, sha256: str, limit: int) -> "Upload":
        lock = self._lock(station_id, sha256, exclusive=True)
        try:
            return Upload(self._partial(station_id, sha256), sha256, limit, self.buffers, lock)
        except BaseException:
            os.close(lock)
            raise

    def _lock(self, station_id: str, sha256: str, exclusive: bool) -> int | None:
        """A descriptor of the partial holding its lock (None: there is none, and a reader need not make one)."""
        try:
            return _lock_partial(self._partial(station_id, sha256), exclusive, self.lock_wait_s)
        except TimeoutError:
            raise WrongOffset(
                f"blob {sha256[:12]}: another call is still writing this page after {self.lock_wait_s:g} s; "
                "query the write status and resume from there (the station retries by itself)") from None

    def finish_many(self, uploads: list["Upload"]) -> dict[str, Exception]:
        refused, good = {}, []
        try:
            for upload in uploads:
                try:
                    upload.close_file()
                except OSError as exc:
                    refused[upload.sha256] = exc
                    continue
                try:
                    size = upload.path.stat().st_size
                except FileNotFoundError:
                    if self.has(upload.sha256):
                        continue  # another stream of this upload (a station resuming after a cut) stored it first
                    raise
                if upload.digest != upload.sha256 or size != upload.limit:
                    upload.path.unlink(missing_ok=True)
                    if self.has(upload.sha256):
                        continue  # stored by the call this one waited for: what this one holds is not needed
                    refused[upload.sha256] = self.damaged(upload.sha256, size, upload.digest, upload.limit)
                else:
                    good.append((upload.path, upload.sha256))
            self.files.adopt_many(good)
        finally:
            for upload in uploads:  # only once stored or discarded: a waiting call then finds no partial
                upload.release()
        return refused


def _lock_partial(path: Path, exclusive: bool, wait_s: float) -> int | None:
    """Open the partial at ``path`` (an exclusive locker creates it) and flock it, waiting up to
    ``wait_s``; TimeoutError past that. None when a shared locker finds no partial.

    The wait polls: flock has no timed form, a thread blocked in it cannot be called back, and a signal
    to break it off reaches the main thread only. The pauses double from 2 ms to at most 50 ms, the last
    one cut to the deadline, so a freed lock is taken within 50 ms and the wait ends at ``wait_s``."""
    deadline = time.monotonic() + wait_s
    flags = (os.O_RDWR | os.O_CREAT if exclusive else os.O_RDONLY) | os.O_CLOEXEC
    mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
    while True:
        try:
            fd = os.open(path, flags, 0o666)
        except FileNotFoundError:
            return None
        try:
            pause = 0.002
            while True:
                try:
                    fcntl.flock(fd, mode)
                    break
                except BlockingIOError:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError(path) from None
                    time.sleep(min(pause, left))
                    pause = min(pause * 2, 0.05)
            # The holder may have stored or discarded the file while we waited: lock what the name holds now.
            if _same_file(path, fd):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def _same_file(path: Path, fd: int) -> bool:
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


BLOCK = 4096   # O_DIRECT transfers start and end on this boundary (a multiple of 512- and 4096-byte sectors)


class AlignedBuffers:
    """Page-aligned buffers for direct writes, kept for reuse: a fresh one per blob would fault in
    new memory for every blob."""

    room = 4 << 20   # bytes of a chunk a buffer takes at once (a longer chunk goes in pieces)
    keep = 16

    def __init__(self):
        self._free: list[mmap.mmap] = []
        self._lock = threading.Lock()

    def take(self) -> mmap.mmap:
        with self._lock:
            if self._free:
                return self._free.pop()
        return mmap.mmap(-1, self.room + BLOCK)

    def give_back(self, buf: mmap.mmap) -> None:
        with self._lock:
            if len(self._free) < self.keep:
                self._free.append(buf)
                return
        buf.close()


_writers: ThreadPoolExecutor | None = None
_writers_lock = threading.Lock()


def _writer_pool() -> ThreadPoolExecutor:
    """The process's threads that carry uploads' direct writes (one at a time per upload).

    (multiprocessing's ThreadPool, used before, passed every task and result through two threads
    of its own as well: 309 against 336 MB/s in alternating runs of bench/sync.py.)
    """
    global _writers
    with _writers_lock:
        if _writers is None:
            _writers = ThreadPoolExecutor(4, thread_name_prefix=WRITER_THREADS)
        return _writers


WRITER_THREADS = "quire-write"


class Upload:
    """One open partial upload: chunks must arrive at exactly the committed offset.

    Data is fsynced every ``sync_every`` bytes and when the stream ends, so a crash loses at most
    that much, which the station simply re-sends from the offset the file then has.

    Where the filesystem allows it the partial is written with O_DIRECT through aligned buffers:
    the archive writes each blob once and seldom reads it soon after, so copying it into the page
    cache would only cost CPU and push out what is read (the catalogue, dossiers in use). The
    write of one chunk goes to the disk on a helper thread while the next chunk is checked and
    hashed; the next chunk, ``sync`` and ``close`` wait for it, and a write that failed cuts the
    file back to what the disk took and is raised there. The file ends where its last write did:
    a last block that is not whole is written padded with zeros and the file cut back to the
    size; the next chunk writes that block again, completed.
    """

    sync_every = 8 << 20

    def __init__(self, path: Path, sha256: str, limit: int, buffers: AlignedBuffers | None = None,
                 lock: int | None = None):
        self.path, self.sha256, self.limit = path, sha256, limit
        self._lock = -1 if lock is None else lock   # a descriptor flocking the partial: this call is its one writer
        self.fd, self.direct = _open_for_append(path, direct=buffers is not None)
        self.size = os.fstat(self.fd).st_size   # bytes accepted; the last chunk may be on its way to the disk
        self._written = self.size               # bytes the disk has taken
        self._unsynced = 0
        self._buffers = buffers
        self._bufs = [buffers.take(), buffers.take()] if self.direct else []
        self._turn = 0
        self._pending = None
        # Hash as the bytes arrive; a resumed upload first hashes what the earlier streams left.
        self._hash, self._sm3 = hashlib.sha256(), sm3()
        if self.size:
            with open(path, "rb") as prefix:
                while chunk := prefix.read(1 << 20):
                    self._hash.update(chunk)
                    self._sm3.update(chunk)
        self._tail = self._last_block()

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
            if self.direct:
                view, room = memoryview(data), self._buffers.room
                for at in range(0, len(data), room):
                    self._send(view[at:at + room])
            else:
                _write_all(self.fd, data)
                self._sm3.update(data)
                self.size = self._written = self.size + len(data)
            self._hash.update(data)  # while the write (and its SM3) is on its way
            self._unsynced += len(data)
            if self._unsynced >= self.sync_every:
                self.sync()
        except OSError:
            # Disk full mid-chunk: cut back to the last whole chunk so the resume point is exact. (The
            # digest may now count bytes the file lacks: a stream that fails ends its upload, and the
            # next one hashes what the file holds.)
            self._cut_back()
            raise
        return self.size

    def _send(self, piece: memoryview) -> None:
        """Hand ``piece`` to the disk after the accepted bytes, in a buffer whose first bytes are the
        accepted part of the block it starts in."""
        buf, kept = self._bufs[self._turn], len(self._tail)
        self._turn ^= 1
        end = kept + len(piece)
        whole = -(-end // BLOCK) * BLOCK
        buf[:kept] = self._tail
        buf[kept:end] = piece
        buf[end:whole] = bytes(whole - end)
        self._tail = bytes(buf[end - end % BLOCK:end])
        self._settle()  # writes reach the file in order: a block may be written again, completed
        self._pending = _writer_pool().submit(self._write, buf, self.size - kept, kept, end, whole)
        self.size += len(piece)

    def _write(self, buf: mmap.mmap, start: int, kept: int, end: int, whole: int) -> None:
        """On a helper thread: write ``buf[:whole]`` at ``start``, cut the file to ``start + end``, and
        hash the new bytes ``buf[kept:end]`` into the SM3 (SM3 is slow: here it overlaps the stream's
        own SHA-256 and the next chunk's arrival instead of following them)."""
        block, done = memoryview(buf), 0
        while done < whole:  # a short write means the disk filled: the next one says so
            written = os.pwrite(self.fd, block[done:whole], start + done)
            if written == 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
            done += written
        if whole > end:
            os.ftruncate(self.fd, start + end)
        self._written = start + end
        self._sm3.update(block[kept:end])

    def _settle(self) -> None:
        """Wait for the write on its way; raise what it raised."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def _cut_back(self) -> None:
        """After a failed write: the file, and what is accepted, end where the disk's last write did."""
        pending, self._pending = self._pending, None
        if pending is not None:
            wait([pending])
        os.ftruncate(self.fd, self._written)
        self.size = self._written
        self._tail = self._last_block()

    def _last_block(self) -> bytes:
        """The accepted bytes of the last, partly filled block (what a direct write repeats)."""
        kept = self.size % BLOCK if self.direct else 0
        if not kept:
            return b""
        with open(self.path, "rb") as fh:
            fh.seek(self.size - kept)
            return fh.read(kept)

    @property
    def digest(self) -> str:
        return self._hash.hexdigest()

    @property
    def sm3(self) -> str:
        return self._sm3.hexdigest()

    def sync(self) -> None:
        self._settle()
        os.fsync(self.fd)
        self._unsynced = 0

    def close(self) -> None:
        """Wait for the last write, flush the file and let the next call write it; raise if the write
        or the flush failed (the file then ends where the disk's last good write did)."""
        try:
            self.close_file()
        finally:
            self.release()

    def release(self) -> None:
        """Let another call write this partial (an empty one is removed first: it holds nothing to resume)."""
        if self._lock < 0:
            return
        try:
            if self.size == 0 and _same_file(self.path, self._lock) and os.fstat(self._lock).st_size == 0:
                self.path.unlink()
        finally:
            os.close(self._lock)
            self._lock = -1

    def close_file(self) -> None:
        """Wait for the last write and flush the file, keeping the partial locked; raise if either failed."""
        if self.fd < 0:
            return
        try:
            if self._unsynced or self._pending is not None:
                self.sync()
        except OSError:
            self._cut_back()
            raise
        finally:
            if self._pending is not None:
                wait([self._pending])
            os.close(self.fd)
            self.fd = -1
            for buf in self._bufs:
                self._buffers.give_back(buf)
            self._bufs = []

    def __enter__(self) -> "Upload":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _open_for_append(path: Path, direct: bool) -> tuple[int, bool]:
    """A write descriptor at the end of ``path`` (created if new), direct where the filesystem allows."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC
    if direct:
        try:
            return os.open(path, flags | os.O_DIRECT, 0o666), True
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # EINVAL: this filesystem has no direct I/O
                raise
    fd = os.open(path, flags | os.O_APPEND, 0o666)
    return fd, False


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
