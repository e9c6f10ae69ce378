"""`verify` finds tampering the cheap checks miss, and names each problem."""

import os
import sqlite3

import pytest

from central.verify import verify
from station.scan import scan
from station.sync import sync


@pytest.fixture
def synced(central, tmp_path):
    from tests.conftest import make_station, register

    archive, address = central
    st = register(archive, address, make_station(tmp_path / "st", address, dpi=150))
    for n, item in enumerate(("1-1", "4-1-2"), 1):
        scan(st, {"archive_no": "D-9"}, {"item": item, "title": "t"}, f"synthetic:seed={n},sheets=1")
    assert len(sync(st).committed) == 2
    st.close()
    return archive


def test_clean_archive_verifies(synced):
    report = verify(synced)
    assert report.ok and report.bundles == 2 and report.pages == 4


def test_changed_page_file_is_found_by_full_check_but_not_quick(synced):
    sha = synced.catalogue.query("SELECT sha256 FROM pages ORDER BY n LIMIT 1")[0]["sha256"]
    path = synced.blobs.path(sha)
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[100] ^= 0x55
    path.write_bytes(bytes(data))
    assert verify(synced, full=False).ok  # same size: the cheap check cannot see it
    problems = verify(synced).problems
    assert [p.kind for p in problems] == ["DigestMismatch"]
    assert sha in str(problems[0])


def test_edited_catalogue_row_is_found(synced):
    conn = sqlite3.connect(synced.config.db_path)
    conn.execute("UPDATE materials SET page_count = 7 WHERE item = '1-1'")
    # Swap in page 1 of the other material: a real blob, so only the catalogue lies.
    conn.execute("UPDATE pages SET sha256 = (SELECT p.sha256 FROM pages p JOIN materials m"
                 " ON m.id = p.material_id WHERE m.item = '1-1' AND p.n = 1)"
                 " WHERE n = 1 AND material_id = (SELECT id FROM materials WHERE item = '4-1-2')")
    conn.commit()
    conn.close()
    problems = [str(p) for p in verify(synced).problems]
    assert any("D-9 1-1" in p and "7" in p for p in problems)
    assert any("D-9 4-1-2" in p and "pages [1]" in p for p in problems)


def test_deleted_blob_and_forged_signature_are_each_named(synced):
    sha = synced.catalogue.query("SELECT sha256 FROM pages LIMIT 1")[0]["sha256"]
    synced.blobs.path(sha).unlink()
    conn = sqlite3.connect(synced.config.db_path)
    conn.execute("UPDATE bundles SET signature = zeroblob(64) WHERE rowid = 1")
    conn.commit()
    conn.close()
    kinds = sorted({p.kind for p in verify(synced).problems})
    assert kinds == ["BlobMissing", "SignatureInvalid"]
