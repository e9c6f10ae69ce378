"""Export anyone can verify: a dossier as a BagIt bag, checked offline by 'verify-export' with no archive,
round-tripped and tampered with in each way a page, a material or a signature can be altered."""

import shutil

import bagit
import nacl.signing
import pytest

from central import audit, users
from central.verify import verify as check_archive
from quire import keys
from station.scan import scan
from station.sync import sync
from tests.conftest import cli_in_process, make_station, register, run_cli


@pytest.fixture(params=["disk", "scaled"])
def blob_kind(request):
    """Every test here runs on both kinds of storage: embedded (SQLite, disk) and scaled (PostgreSQL, S3)."""
    return request.param


@pytest.fixture
def desk(central, station):
    """Dossier D-1 (two materials, 6 + 4 pages: sheets are scanned duplex) catalogued; archivists of unit-a and unit-b, a reader and a
    security officer of unit-a."""
    archive, address = central
    scan(station, {"archive_no": "D-1", "name": "张三"}, {"item": "1-1", "title": "履历表"}, "synthetic:seed=1,sheets=3")
    scan(station, {"archive_no": "D-1"}, {"item": "4-1-2", "title": "考核"}, "synthetic:seed=2,sheets=2")
    assert len(sync(station).committed) == 2
    tokens = {name: users.add(archive, name, name, [role], [unit]) for name, role, unit in (
        ("arc", "archivist", "unit-a"), ("arc2", "archivist", "unit-a"), ("arc-b", "archivist", "unit-b"), ("li", "reader", "unit-a"),
        ("sec", "security_officer", "unit-a"))}

    def cli(who, *args, check=True):
        env = {"QUIRE_TOKEN": tokens[who]} if who else {}
        return cli_in_process("quire-central", "--home", archive.config.home, *args, env=env, check=check)

    return archive, cli


@pytest.fixture
def bag(desk, tmp_path):
    archive, cli = desk
    out = tmp_path / "D-1.bag"
    printed = cli("arc", "export", "D-1", "--out", out, "--reason", "转递 to another organisation").stdout
    assert "2 material(s), 10 page(s)" in printed
    return out


def verify(bag, *args, run=cli_in_process):
    """verify-export as a stranger runs it: no --home, no archive, nothing but the bag."""
    return run("quire-central", "verify-export", bag, *args, check=False, env={"QUIRE_CENTRAL_HOME": "/nonexistent"})


def copy(bag, tmp_path, name):
    dest = tmp_path / name
    shutil.copytree(bag, dest)
    return dest


def rebag(path):
    """What a forger does after changing the payload: bagit's manifests made to match again."""
    bagit.Bag(str(path)).save(manifests=True)


def test_an_export_round_trips_and_is_logged(desk, bag):
    archive, cli = desk
    assert bagit.Bag(str(bag)).is_valid()
    data = bag / "data"
    assert sorted(p.name for p in (data / "1-1").iterdir()) == [
        *(f"{n:04d}.jpg" for n in range(1, 7)), "manifest.json", "manifest.sig", "receipt.json", "receipt.sig"]
    listing = (data / "目录.csv").read_text(encoding="utf-8-sig").splitlines()
    assert listing[0].startswith("序号,档号,类号,题名") and listing[1].startswith("1,D-1,1-1,履历表")
    assert (bag / "manifest-sm3.txt").exists() and "manifest-sm3.txt" in (bag / "tagmanifest-sha256.txt").read_text()
    ok = verify(bag, "--archive-key", keys.fingerprint(archive.public_key), run=run_cli)   # the installed command
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "2 material(s), 10 page(s)" in ok.stdout and "OK" in ok.stdout
    (entry,) = [e for e in audit.entries(archive) if e["event"] == "dossier.export"]
    assert (entry["by"], entry["archive_no"], entry["items"]) == ("user:arc", "D-1", ["1-1", "4-1-2"])
    assert "转递" in entry["reason"]
    one = cli("arc", "export", "D-1", "4-1-2", "--out", bag.parent / "one.bag").stdout
    assert "1 material(s), 4 page(s)" in one and verify(bag.parent / "one.bag").returncode == 0


def test_a_changed_page_fails_even_when_the_bag_is_remade(bag, tmp_path):
    raw = copy(bag, tmp_path, "changed")
    page = raw / "data" / "1-1" / "0002.jpg"
    page.write_bytes(page.read_bytes()[:-10] + b"0123456789")
    out = verify(raw).stdout
    assert "BagInvalid" in out and "data/1-1/0002.jpg sha256 validation failed" in out
    rebag(raw)
    out = verify(raw)
    assert out.returncode == 1 and "DigestMismatch data/1-1/0002.jpg" in out.stdout and "BagInvalid" not in out.stdout


def test_added_removed_and_reordered_pages_are_named(bag, tmp_path):
    forged = copy(bag, tmp_path, "forged")
    pages = forged / "data" / "1-1"
    shutil.copy(pages / "0001.jpg", pages / "0007.jpg")                    # added
    (forged / "data" / "4-1-2" / "0002.jpg").unlink()                    # removed
    first, second = (pages / "0001.jpg").read_bytes(), (pages / "0002.jpg").read_bytes()
    (pages / "0001.jpg").write_bytes(second)                               # reordered
    (pages / "0002.jpg").write_bytes(first)
    rebag(forged)
    out = verify(forged)
    assert out.returncode == 1
    for line in ("PageAdded data/1-1/0007.jpg", "PageMissing data/4-1-2/0002.jpg",
                 "PageOutOfOrder data/1-1/0001.jpg: should be page 1 but holds the image signed as page 2",
                 "PageOutOfOrder data/1-1/0002.jpg: should be page 2 but holds the image signed as page 1"):
        assert line in out.stdout, out.stdout


def test_a_removed_material_fails(bag, tmp_path):
    forged = copy(bag, tmp_path, "no-material")
    shutil.rmtree(forged / "data" / "4-1-2")
    rebag(forged)
    out = verify(forged)
    assert out.returncode == 1 and "ExportInvalid data/4-1-2: material 4-1-2 is incomplete" in out.stdout


def test_a_manifest_re_signed_by_another_key_fails(bag, tmp_path):
    forged = copy(bag, tmp_path, "resigned")
    folder = forged / "data" / "1-1"
    other = nacl.signing.SigningKey.generate()
    data = (folder / "manifest.json").read_bytes()
    (folder / "manifest.sig").write_text(keys.sign(other, keys.BUNDLE_CONTEXT, data).hex())
    rebag(forged)
    out = verify(forged)
    assert out.returncode == 1 and "SignatureInvalid bundle" in out.stdout and "1-1/manifest.sig" in out.stdout


def test_a_bag_signed_by_another_archive_is_refused_when_the_key_is_given(bag, tmp_path, desk):
    archive, _ = desk
    forged = copy(bag, tmp_path, "other-archive")
    other = nacl.signing.SigningKey.generate()
    quire_dir = forged / "data" / "quire"
    (quire_dir / "archive-key.pub").write_text(bytes(other.verify_key).hex())
    index = (quire_dir / "export.json").read_bytes()
    (quire_dir / "export.sig").write_text(keys.sign(other, keys.EXPORT_CONTEXT, index).hex())
    rebag(forged)
    out = verify(forged, "--archive-key", keys.fingerprint(archive.public_key))
    assert out.returncode == 1
    assert f"is signed by {keys.fingerprint(bytes(other.verify_key))}, not by" in out.stdout
    assert "NotInLog" in out.stdout   # the real archive's checkpoint does not verify under the forger's key


def test_who_may_export(desk, tmp_path):
    archive, cli = desk
    other_unit = cli("arc-b", "export", "D-1", "--out", tmp_path / "b", check=False)
    assert other_unit.returncode == 77 and "no authority over unit unit-a" in other_unit.stderr
    reader = cli("li", "export", "D-1", "--out", tmp_path / "r", check=False)
    assert reader.returncode == 77 and "no approved consultation" in reader.stderr
    c = cli("li", "consult", "request", "D-1", "--purpose", "出具证明", "--days", "3", "--export").stdout
    cid = c.split("#")[1].split()[0]
    cli("sec", "consult", "approve", cid)
    viewing_only = cli("li", "export", "D-1", "--out", tmp_path / "r", "--consultation", cid, check=False)
    assert viewing_only.returncode == 77 and "exporting or copying needs its own approval" in viewing_only.stderr
    cli("sec", "consult", "approve", cid, "--export")
    cli("li", "export", "D-1", "--out", tmp_path / "r", "--consultation", cid)
    assert verify(tmp_path / "r").returncode == 0
    assert not (tmp_path / "b").exists()
    denied = [(e["by"], e["action"]) for e in audit.entries(archive) if e["event"] == "access.denied"]
    assert denied == [("user:arc-b", "dossier.export"), ("user:li", "dossier.export"), ("user:li", "dossier.export")]
    exports = [(e["by"], e["consultation"]) for e in audit.entries(archive) if e["event"] == "dossier.export"]
    assert exports == [("user:li", int(cid))]


def test_a_transfer_closes_the_dossier_here_and_the_receiving_archive_imports_it(desk, tmp_path):
    archive, cli = desk
    change = cli("arc", "transfer", "D-1", "--to", "某市委组织部", "--reason", "调任某市").stdout.split("#")[1].split()[0]
    early = cli("arc", "export", "D-1", "--transfer", "--out", tmp_path / "early", check=False)
    assert early.returncode == 1 and "transfer was approved" in early.stderr
    assert cli("arc", "changes", "approve", change, check=False).returncode == 77   # not by the proposer
    cli("arc2", "changes", "approve", change)
    assert cli("arc", "ls").stdout.splitlines()[-1].rstrip().endswith("transferred")
    for refused in (cli("li", "consult", "request", "D-1", "--purpose", "考察", check=False),
                    cli("arc", "export", "D-1", "--out", tmp_path / "plain", check=False),
                    cli("arc", "dossiers", "edit", "D-1", "--set", "post=科长", "--reason", "x", check=False)):
        assert refused.returncode == 77 and "was transferred to 某市委组织部 (转递)" in refused.stderr, refused.stderr
    package = tmp_path / "package"
    cli("arc", "export", "D-1", "--transfer", "--out", package)
    ok = verify(package, "--archive-key", keys.fingerprint(archive.public_key))
    assert ok.returncode == 0 and "transfer package of D-1 to 某市委组织部: 2 material(s), 10 page(s)" in ok.stdout
    logged = [(e["event"], e["by"]) for e in audit.entries(archive) if e["event"] in ("dossier.transfer", "dossier.export")]
    assert logged == [("dossier.transfer", "user:arc2"), ("dossier.export", "user:arc")]
    assert check_archive(archive).ok
    # The receiving archive: verifies everything under the sender's key, then catalogues under its own unit.
    receiver = tmp_path / "receiver"
    (receiver / "profiles").mkdir(parents=True)
    shutil.copy(archive.config.home / "profiles" / "tests-150dpi.toml", receiver / "profiles")
    there = lambda *args, check=True: cli_in_process("quire-central", "--home", receiver, *args, check=check)  # noqa: E731
    there("init")
    there("profiles", "default", "tests-150dpi")
    wrong_key = there("import", package, "--unit", "unit-x", "--from-key", "SHA256:" + "0" * 64, check=False)
    assert wrong_key.returncode == 1 and "nothing was imported" in wrong_key.stderr
    assert "imported D-1 into unit unit-x: 2 material(s), 10 page(s)" in there(
        "import", package, "--unit", "unit-x", "--from-key", keys.fingerprint(archive.public_key)).stdout
    assert "D-1" in there("ls").stdout and "unit-x" in there("ls").stdout
    assert there("verify").returncode == 0
    events = there("audit", "ls").stdout
    assert events.count(" ingest ") == 2 and "dossier.import" in events
    again = there("import", package, "--unit", "unit-x", "--from-key", keys.fingerprint(archive.public_key), check=False)
    assert again.returncode == 1 and "catalogued here already" in again.stderr


def test_a_bag_carries_the_preservation_masters_the_station_signed(central, tmp_path):
    """A material kept with its untouched captures leaves with them: verify-export checks each against the
    signed manifest, names one that is missing or altered, and the receiving archive stores them."""
    archive, address = central
    station = register(archive, address, make_station(tmp_path / "st", address, pipeline={"keep_master": True}))
    try:
        scan(station, {"archive_no": "D-2", "name": "李四"}, {"item": "1-1", "title": "履历"}, "synthetic:seed=3,sheets=1")
        assert len(sync(station).committed) == 1
    finally:
        station.close()
    tokens = {name: users.add(archive, name, name, ["archivist"], ["unit-a"]) for name in ("arc", "arc2")}

    def cli(who, *args):
        return cli_in_process("quire-central", "--home", archive.config.home, *args, env={"QUIRE_TOKEN": tokens[who]})

    out = tmp_path / "D-2.bag"
    cli("arc", "export", "D-2", "--out", out, "--reason", "查阅")
    masters = sorted(p.name for p in (out / "data" / "1-1").glob("master-*"))
    assert masters == ["master-0001.tif", "master-0002.tif"]
    ok = verify(out)
    assert ok.returncode == 0 and "1 material(s), 2 page(s)" in ok.stdout, ok.stdout + ok.stderr
    for damage in ("missing", "altered"):
        bad = copy(out, tmp_path, damage)
        target = bad / "data" / "1-1" / "master-0002.tif"
        if damage == "missing":
            target.unlink()
        else:
            data = target.read_bytes()
            target.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
        rebag(bad)
        failed = verify(bad)
        assert failed.returncode != 0 and "data/1-1/master-0002.tif" in failed.stdout + failed.stderr, failed.stdout
    # A transfer package carries them to the receiving archive, which stores every file the bundle signed.
    change = cli("arc", "transfer", "D-2", "--to", "某市委组织部", "--reason", "调任").stdout.split("#")[1].split()[0]
    cli("arc2", "changes", "approve", change)
    package = tmp_path / "package"
    cli("arc", "export", "D-2", "--transfer", "--out", package)
    receiver = tmp_path / "receiver"
    (receiver / "profiles").mkdir(parents=True)
    shutil.copy(archive.config.home / "profiles" / "tests-150dpi.toml", receiver / "profiles")
    there = lambda *args: cli_in_process("quire-central", "--home", receiver, *args)  # noqa: E731
    there("init")
    there("profiles", "default", "tests-150dpi")
    there("import", package, "--unit", "unit-x", "--from-key", keys.fingerprint(archive.public_key))
    assert there("verify").returncode == 0
