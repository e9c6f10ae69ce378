"""The archive's partial uploads: exact bytes at every committed size, however the chunks fall."""

import errno
import hashlib
import os
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from central.store.blobs import BLOCK, AlignedBuffers, DiskBlobStore, Upload
from central.store.blobs_s3 import S3BlobStore
from central.errors import BlobRejected, UploadDamaged, WrongOffset
from tests.s3server import partial_uploads

DATA = os.urandom(5 * BLOCK + 1234)
SHA = hashlib.sha256(DATA).hexdigest()


@pytest.fixture(params=["direct", "page cache"])
def buffers(request):
    """Both ways an upload is written: direct through aligned buffers, or through the page cache."""
    return AlignedBuffers() if request.param == "direct" else None


def test_chunks_of_any_size_leave_exactly_the_committed_bytes(tmp_path, buffers):
    path = tmp_path / "blob.part"
    upload = Upload(path, SHA, len(DATA), buffers)
    at = 0
    for size in (1000, 5000, BLOCK, 3, 2 * BLOCK + 17):
        upload.append(at, DATA[at:at + size])
        at += size
        upload.sync()  # the last write may still be on its way until then
        assert path.read_bytes() == DATA[:at], f"file differs from what was committed after {at} bytes"
    upload.close()
    # Resumed by a later stream at an offset inside a block: that block is written again, completed.
    upload = Upload(path, SHA, len(DATA), buffers)
    assert upload.size == at
    upload.append(at, DATA[at:])
    upload.close()
    assert path.read_bytes() == DATA and upload.digest == SHA


def test_a_chunk_longer_than_the_buffer_goes_in_pieces(tmp_path):
    buffers = AlignedBuffers()
    buffers.room = 2 * BLOCK
    path = tmp_path / "blob.part"
    with Upload(path, SHA, len(DATA), buffers) as upload:
        upload.append(0, DATA[:7])
        upload.append(7, DATA[7:])
    assert path.read_bytes() == DATA and upload.digest == SHA


def test_gaps_and_overruns_are_refused_and_write_nothing(tmp_path, buffers):
    path = tmp_path / "blob.part"
    with Upload(path, SHA, len(DATA), buffers) as upload:
        upload.append(0, DATA[:100])
        with pytest.raises(WrongOffset, match="100 bytes are committed"):
            upload.append(200, DATA[200:300])
        with pytest.raises(BlobRejected, match="manifest says 21714"):
            upload.append(100, DATA[100:] + b"x")
    assert path.read_bytes() == DATA[:100]


@pytest.fixture(params=["disk", "s3"])
def store(request, tmp_path):
    """A blob store of each kind: a directory, or a fresh prefix in the session's SeaweedFS bucket."""
    if request.param == "disk":
        yield DiskBlobStore(tmp_path / "blobs", tmp_path / "uploads")
        return
    s3 = request.getfixturevalue("s3_server")
    store = S3BlobStore(f"s3://{s3.bucket}/{uuid.uuid4().hex}", s3.credentials_file(tmp_path / "s3.toml"))
    yield store
    store.close()


def test_finishing_a_group_stores_the_good_and_discards_the_damaged(store):
    other = os.urandom(3000)
    good = store.open_upload("st-1", SHA, len(DATA))
    good.append(0, DATA)
    damaged = store.open_upload("st-1", hashlib.sha256(other).hexdigest(), len(other))
    damaged.append(0, other[:-1] + bytes([other[-1] ^ 1]))
    refused = store.finish_many([good, damaged])
    assert list(refused) == [damaged.sha256] and isinstance(refused[damaged.sha256], UploadDamaged)
    assert "send it again from offset 0" in str(refused[damaged.sha256])
    with store.open(SHA) as fh:
        assert store.has(SHA) and fh.read() == DATA
    assert not store.has(damaged.sha256) and not partial_uploads(store)


def test_two_streams_finishing_one_upload_store_it_once_and_neither_is_refused(store):
    """A station's stream is cut after its last chunk reached the archive; the station resumes on a new
    stream and finishes the blob while the old stream's finish is still on its way (on disk, the new
    stream's call waits for the old one to let go of the partial)."""
    cut = store.open_upload("st-1", SHA, len(DATA))
    cut.append(0, DATA)
    cut.close()
    old = store.open_upload("st-1", SHA, len(DATA))
    assert old.size == len(DATA)
    with ThreadPoolExecutor(1) as pool:
        resuming = pool.submit(store.open_upload, "st-1", SHA, len(DATA))
        assert store.finish_many([old]) == {}
        resumed = resuming.result()
    assert store.finish_many([resumed]) == {}
    with store.open(SHA) as fh:
        assert fh.read() == DATA
    assert not partial_uploads(store)


def test_a_full_disk_cuts_the_upload_back_to_its_last_whole_chunk(small_disk, buffers):
    data = os.urandom(40 * BLOCK)
    sha = hashlib.sha256(data).hexdigest()
    path = small_disk.path / "blob.part"
    chunk = 4 * BLOCK
    small_disk.fill(leave_bytes=10 * BLOCK)
    upload = Upload(path, sha, len(data), buffers)
    with pytest.raises(OSError) as info:
        for at in range(0, len(data), chunk):
            upload.append(at, data[at:at + chunk])
        upload.close()
    assert info.value.errno == errno.ENOSPC
    upload.close()
    kept = path.stat().st_size
    assert 0 < kept < len(data) and kept % chunk == 0 and upload.size == kept
    assert path.read_bytes() == data[:kept]
    small_disk.free()  # the next stream resumes from the file's size and completes the blob
    with Upload(path, sha, len(data), buffers) as upload:
        upload.append(kept, data[kept:])
    assert path.read_bytes() == data and upload.digest == sha
