"""`verify` finds tampering the cheap checks miss, and names each problem."""

import pytest

from central.verify import verify
from station.scan import scan
from station.sync import sync
from tests.conftest import behind_the_archive
from tests.s3server import tamper


@pytest.fixture(params=["disk", "scaled"])
def blob_kind(request):
    """Every test here runs on both kinds of storage: embedded (SQLite, disk) and scaled (PostgreSQL, S3)."""
    return request.param


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
    with synced.blobs.open(sha) as fh:
        data = bytearray(fh.read())
    data[100] ^= 0x55
    tamper(synced, sha, bytes(data))
    assert verify(synced, full=False).ok  # same size: the cheap check cannot see it
    problems = verify(synced).problems
    assert [p.kind for p in problems] == ["DigestMismatch"]
    assert sha in str(problems[0])


def test_edited_catalogue_row_is_found(synced):
    with behind_the_archive(synced) as conn:
        conn.execute("UPDATE materials SET page_count = 7 WHERE item = '1-1'")
        # Swap in page 1 of the other material: a real blob, so only the catalogue lies.
        conn.execute("UPDATE pages SET sha256 = (SELECT p.sha256 FROM pages p JOIN materials m"
                     " ON m.id = p.material_id WHERE m.item = '1-1' AND p.n = 1)"
                     " WHERE n = 1 AND material_id = (SELECT id FROM materials WHERE item = '4-1-2')")
    problems = [str(p) for p in verify(synced).problems]
    assert any("D-9 1-1" in p and "7" in p for p in problems)
    assert any(p.startswith("FieldMismatch material D-9 4-1-2 page 1: sha256 is") for p in problems)


def test_deleted_blob_and_forged_signature_are_each_named(synced):
    sha = synced.catalogue.query("SELECT sha256 FROM pages LIMIT 1")[0]["sha256"]
    tamper(synced, sha, None)
    with behind_the_archive(synced) as conn:
        conn.execute("UPDATE bundles SET signature = ? WHERE seq = 1", [bytes(64)])
    kinds = sorted({p.kind for p in verify(synced).problems})
    assert kinds == ["BlobMissing", "SignatureInvalid"]


def _edit(archive, *statements):
    with behind_the_archive(archive) as conn:
        for sql in statements:
            conn.execute(sql)


def _verify_cli(archive, *args, env=None):
    from tests.conftest import cli_in_process

    return cli_in_process("quire-central", "--home", archive.config.home, "verify", *args, env=env, check=False)


def test_catalogue_fields_edited_against_the_signed_manifest_are_each_named(synced):
    _edit(synced,
          "UPDATE materials SET title = '伪造' WHERE item = '1-1'",
          "UPDATE pages SET dpi = 600, media_type = 'image/tiff', colour = 'bilevel'"
          " WHERE n = 2 AND material_id = (SELECT id FROM materials WHERE item = '4-1-2')",
          "UPDATE dossiers SET unit = 'unit-b' WHERE archive_no = 'D-9'",
          "UPDATE stations SET unit = 'unit-b'")
    for args in ((), ("--quick",)):
        proc = _verify_cli(synced, *args)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        lines = proc.stdout.splitlines()
        for subject, field, catalogue, signed in (
                ("material D-9 1-1", "title", "'伪造'", "'t'"),
                ("material D-9 4-1-2 page 2", "dpi", "600", "150"),
                ("material D-9 4-1-2 page 2", "media_type", "'image/tiff'", "'image/jpeg'"),
                ("material D-9 4-1-2 page 2", "colour", "'bilevel'", "'grey'"),
                ("dossier D-9", "unit", "'unit-b'", "'unit-a'"),
                ("station st-test", "unit", "'unit-b'", "'unit-a'")):
            assert any(line.startswith(f"FieldMismatch {subject}: {field} is {catalogue} in the catalogue")
                       and signed in line for line in lines), (subject, field, proc.stdout)
        assert "6 PROBLEM(S)" in lines[-1]


def test_a_four_eyes_edit_of_the_post_still_verifies_but_a_direct_edit_of_it_does_not(synced):
    from central import users
    from tests.conftest import cli_in_process

    tokens = {name: users.add(synced, name, name, ["archivist"], ["unit-a"]) for name in ("arc1", "arc2")}
    proposed = cli_in_process("quire-central", "--home", synced.config.home, "dossiers", "edit", "D-9",
                              "--set", "post=科长", "--reason", "任职变动", env={"QUIRE_TOKEN": tokens["arc1"]}).stdout
    cli_in_process("quire-central", "--home", synced.config.home, "changes", "approve", proposed.split("#")[1].split()[0],
                   env={"QUIRE_TOKEN": tokens["arc2"]})
    assert synced.catalogue.one("SELECT post FROM dossiers")["post"] == "科长"
    auditor = users.add(synced, "aud", "aud", ["auditor"], ["*"])
    ok = _verify_cli(synced, env={"QUIRE_TOKEN": auditor})
    assert ok.returncode == 0 and ok.stdout.splitlines()[-1].endswith("OK"), ok.stdout + ok.stderr
    _edit(synced, "UPDATE dossiers SET post = '处长'")
    proc = _verify_cli(synced, env={"QUIRE_TOKEN": auditor})
    assert proc.returncode == 1
    assert "FieldMismatch dossier D-9: post is '处长' in the catalogue but '科长' in " in proc.stdout


def test_a_material_s_sender_changed_behind_the_archive_is_named(synced):
    ok = _verify_cli(synced, "--quick")
    assert ok.returncode == 0 and ok.stdout.splitlines()[-1].endswith("OK"), ok.stdout + ok.stderr
    # Another station named as the sender, and one left with none (as a migration that missed it would).
    _edit(synced, "UPDATE materials SET station_id = 'st-other' WHERE item = '1-1'",
          "UPDATE materials SET station_id = NULL WHERE item = '4-1-2'")
    for args in ((), ("--quick",)):
        proc = _verify_cli(synced, *args)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        lines = proc.stdout.splitlines()
        for subject, held in (("material D-9 1-1", "station 'st-other'"), ("material D-9 4-1-2", "no station")):
            assert any(line.startswith(f"SenderMismatch {subject}: the catalogue records {held} as its sender, "
                                       "but its bundle ") and "signed by station 'st-test'" in line
                       and "station_id back to 'st-test'" in line for line in lines), (subject, proc.stdout)
        assert "2 PROBLEM(S)" in lines[-1], proc.stdout
