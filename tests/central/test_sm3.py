"""SM3 beside SHA-256 (密评, GB/T 39786): recorded for every blob as it arrives, backfilled for blobs an
older archive stored, checked by verify, carried in exports; and signing behind one Signer interface."""


import bagit
import pytest

from central import audit
from central.store.blobs import _CryptographySm3, sm3
from quire import keys
from quire import receipt as receipt_format
from station.scan import scan
from station.sync import sync
from tests.conftest import behind_the_archive, cli_in_process


@pytest.fixture(params=["disk", "scaled"])
def blob_kind(request):
    """Every test here runs on both kinds of storage: embedded (SQLite, disk) and scaled (PostgreSQL, S3)."""
    return request.param

# GB/T 32905-2016, appendix A, example 1.
SM3_ABC = "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"


def test_sm3_from_openssl_and_from_cryptography_agree_with_the_standard():
    assert sm3(b"abc").hexdigest() == SM3_ABC
    fallback = _CryptographySm3(b"a")
    fallback.update(memoryview(b"bc"))
    assert fallback.hexdigest() == SM3_ABC


@pytest.fixture
def synced(central, station):
    archive, _ = central
    scan(station, {"archive_no": "D-1", "name": "张三"}, {"item": "1-1", "title": "履历表"}, "synthetic:seed=1,sheets=2")
    assert len(sync(station).committed) == 1
    return archive


def cli(archive, *args, check=True):
    return cli_in_process("quire-central", "--home", archive.config.home, *args, check=check)


def test_every_uploaded_blob_has_its_sm3_and_verify_checks_it(synced):
    archive = synced
    blobs = archive.catalogue.query("SELECT sha256, sm3 FROM blobs ORDER BY sha256")
    assert len(blobs) == 4
    for blob in blobs:
        with archive.blobs.open(blob["sha256"]) as fh:
            assert blob["sm3"] == sm3(fh.read()).hexdigest()
    assert cli(archive, "verify").returncode == 0
    with behind_the_archive(archive) as db:
        db.execute("UPDATE blobs SET sm3 = ? WHERE sha256 = ?", ["0" * 64, blobs[0]["sha256"]])
        db.execute("UPDATE blobs SET sm3 = NULL WHERE sha256 = ?", [blobs[1]["sha256"]])
    out = cli(archive, "verify", check=False)
    assert out.returncode == 1
    assert f"DigestMismatch {archive.blobs.where(blobs[0]['sha256'])}: expected SM3 {'0' * 64}, found SM3 " in out.stdout
    assert f"Sm3Missing {archive.blobs.where(blobs[1]['sha256'])}" in out.stdout and "sm3-backfill" in out.stdout


def test_an_archive_from_before_sm3_is_migrated_and_backfilled(synced):
    archive = synced
    archive.close()
    with behind_the_archive(archive) as db:   # the catalogue as the previous release left it
        db.execute("ALTER TABLE blobs DROP COLUMN sm3")
        db.execute("DELETE FROM _migrations WHERE name = '0010_blob_sm3'")
    out = cli(archive, "verify", "--quick", check=False)
    assert out.returncode == 1 and out.stdout.count("Sm3Missing") == 4
    assert "SM3 recorded for 4 blob(s)" in cli(archive, "sm3-backfill").stdout
    assert cli(archive, "verify").returncode == 0
    assert "SM3 recorded for 0 blob(s)" in cli(archive, "sm3-backfill").stdout
    from central import config
    from central.archive import open_archive

    reopened = open_archive(config.load(archive.config.home))
    try:
        runs = [e for e in audit.entries(reopened) if e["event"] == "blobs.sm3_backfill"]
        assert [r["blobs"] for r in runs] == [4, 0]
    finally:
        reopened.close()


def test_exports_carry_the_recorded_sm3_and_verify_export_checks_it(synced, tmp_path):
    archive = synced
    bag = tmp_path / "bag"
    cli(archive, "export", "D-1", "--out", bag)
    listed = dict(reversed(line.split(" ", 1)) for line in (bag / "manifest-sm3.txt").read_text().splitlines())
    pages = archive.catalogue.query("SELECT p.n, b.sm3 FROM pages p JOIN blobs b USING (sha256) ORDER BY p.n")
    assert [listed[f"data/1-1/{p['n']:04d}.jpg"] for p in pages] == [p["sm3"] for p in pages]
    assert "manifest-sm3.txt" in (bag / "tagmanifest-sha512.txt").read_text()
    lines = (bag / "manifest-sm3.txt").read_text().splitlines()
    lines[0] = "0" * 64 + lines[0][64:]
    (bag / "manifest-sm3.txt").write_text("\n".join(lines) + "\n")
    bagit.Bag(str(bag)).save()   # the forger remakes the tag manifests too
    out = cli_in_process("quire-central", "verify-export", bag, check=False)
    assert out.returncode == 1 and f"Sm3Mismatch {lines[0][65:]}: expected SM3 {'0' * 64}" in out.stdout


class CountingSigner:
    """Stands for an HSM or a 签名验签服务器: signs through the Signer interface only, never hands out its key."""

    def __init__(self, inner: keys.Signer):
        self._inner, self.algorithm, self.signed = inner, inner.algorithm, 0

    @property
    def public_key(self) -> bytes:
        return self._inner.public_key

    def signature(self, message: bytes) -> bytes:
        self.signed += 1
        return self._inner.signature(message)


def test_the_archive_signs_through_the_signer_interface(central, station):
    archive, _ = central
    hsm = CountingSigner(keys.signer(archive.key))
    archive.key = hsm
    scan(station, {"archive_no": "D-1"}, {"item": "1-1", "title": "履历表"}, "synthetic:seed=1,sheets=1")
    assert len(sync(station).committed) == 1
    row = archive.catalogue.one("SELECT id, receipt, receipt_signature FROM bundles")
    body = receipt_format.verify(bytes(row["receipt"]), bytes(row["receipt_signature"]), archive.public_key, row["id"])
    assert body["central_key"] == keys.fingerprint(hsm.public_key)
    assert hsm.signed >= 2   # the receipt and the audit checkpoint it carries, at least
