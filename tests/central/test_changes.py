"""Four eyes (双人复核) through the CLI: revoking a station, replacing and withdrawing a material,
editing a dossier's identity — one person proposes, another approves; every version stays."""

import json

import pytest

from central import users
from central.verify import verify
from station import outbox
from station.scan import scan
from station.sync import sync
from tests.conftest import behind_the_archive, cli_in_process


@pytest.fixture(params=["disk", "scaled"])
def blob_kind(request):
    """Every test here runs on both kinds of storage: embedded (SQLite, disk) and scaled (PostgreSQL, S3)."""
    return request.param


@pytest.fixture
def desk(central, station):
    """Dossier D-1 (two materials) catalogued; two administrators and two archivists of unit-a."""
    archive, address = central
    scan(station, {"archive_no": "D-1", "name": "张三", "sex": "男"}, {"item": "1-1", "title": "履历表"},
         "synthetic:seed=1,sheets=1")
    scan(station, {"archive_no": "D-1"}, {"item": "4-1-2", "title": "考核"}, "synthetic:seed=2,sheets=1")
    assert len(sync(station).committed) == 2
    tokens = {name: users.add(archive, name, name, [role], ["unit-a"])
              for name, role in (("adm1", "admin"), ("adm2", "admin"), ("arc1", "archivist"), ("arc2", "archivist"))}

    def cli(who, *args, check=True):
        return cli_in_process("quire-central", "--home", archive.config.home, *args, env={"QUIRE_TOKEN": tokens[who]},
                              check=check)

    return archive, station, cli


def _change_id(out: str) -> str:
    return out.split("#")[1].split()[0]


def test_revoking_a_station_suspends_it_at_once_and_needs_a_second_administrator(desk):
    archive, station, cli = desk
    out = cli("adm1", "stations", "revoke", station.station_id, "--reason", "station stolen").stdout
    change = _change_id(out)
    scan(station, {"archive_no": "D-1"}, {"item": "9-2-1", "title": "奖励"}, "synthetic:seed=3,sheets=1")
    report = sync(station)
    assert "suspended" in report.stopped and not report.rejected
    same = cli("adm1", "changes", "approve", change, check=False)
    assert same.returncode == 77 and "a second person must decide it" in same.stderr
    wrong_role = cli("arc1", "changes", "approve", change, check=False)
    assert wrong_role.returncode == 77 and "needs the role admin" in wrong_role.stderr
    from central import audit

    assert [(e["by"], e["action"]) for e in audit.entries(archive) if e["event"] == "access.denied"] == [
        ("user:adm1", "change.revoke_station"), ("user:arc1", "change.revoke_station")]
    cli("adm2", "changes", "approve", change)
    row = archive.catalogue.one("SELECT revoked_at, revoked_by FROM stations WHERE id = ?", [station.station_id])
    assert row["revoked_at"] and row["revoked_by"] == "user:adm2"


def test_a_refused_revocation_reinstates_the_station(desk):
    archive, station, cli = desk
    change = _change_id(cli("adm1", "stations", "revoke", station.station_id, "--reason", "misplaced").stdout)
    cli("adm2", "changes", "refuse", change, "--note", "found in the cupboard")
    scan(station, {"archive_no": "D-1"}, {"item": "9-2-1", "title": "奖励"}, "synthetic:seed=3,sheets=1")
    report = sync(station)
    assert not report.rejected and len(report.committed) == 1


def test_replacing_a_material_keeps_every_version_and_verifies(desk):
    archive, station, cli = desk
    old = archive.catalogue.one("SELECT bundle_id FROM materials WHERE item = '1-1'")["bundle_id"]
    scan(station, {"archive_no": "D-1"}, {"item": "1-1", "title": "履历表（重扫）", "rescan": True},
         "synthetic:seed=9,sheets=2")
    (new, reason), = sync(station).rejected.items()
    assert "already catalogued" in reason and "replacement workflow" in reason
    assert new[:12] in cli("arc1", "quarantine", "ls").stdout
    change = _change_id(cli("arc1", "materials", "replace", "D-1", "1-1", "--bundle", new[:12],
                            "--reason", "QC 退回重扫").stdout)
    assert archive.catalogue.one("SELECT bundle_id FROM materials WHERE item = '1-1'")["bundle_id"] == old
    assert cli("arc1", "changes", "approve", change, check=False).returncode == 77
    cli("arc2", "changes", "approve", change)
    current = archive.catalogue.one("SELECT * FROM materials WHERE item = '1-1'")
    assert (current["bundle_id"], current["version"], current["page_count"]) == (new, 2, 4)
    history = [json.loads(line) for line in cli("arc1", "materials", "history", "D-1", "1-1", "--json").stdout.splitlines()]
    assert [(h["version"], h["ended_how"]) for h in history] == [(1, "replaced"), (2, "current")]
    assert (history[0]["bundle_id"], history[0]["reason"], history[0]["proposed_by"], history[0]["decided_by"]) == \
        (old, "QC 退回重扫", "user:arc1", "user:arc2")
    assert new[:12] not in cli("arc1", "quarantine", "ls").stdout
    assert verify(archive).ok, verify(archive).problems
    # At its next sync the station learns that its rescan was accepted, with a receipt it verifies.
    report = sync(station)
    assert report.committed == [new] and not report.rejected
    assert {b["id"]: b["state"] for b in outbox.bundles(station.store)}[new] == "committed"
    # Putting the old version back behind the archive's back is caught.
    with behind_the_archive(archive) as db:
        db.execute("UPDATE materials SET bundle_id = ? WHERE id = ?", [old, current["id"]])
    assert any("differ from the signed manifest" in str(p) or "not catalogued" in str(p)
               for p in verify(archive).problems)


def test_withdrawing_a_material_needs_two_archivists_and_is_kept_as_a_version(desk):
    archive, station, cli = desk
    change = _change_id(cli("arc1", "materials", "withdraw", "D-1", "4-1-2", "--reason", "误归档").stdout)
    assert archive.catalogue.one("SELECT 1 AS x FROM materials WHERE item = '4-1-2'")
    cli("arc2", "changes", "approve", change)
    assert archive.catalogue.one("SELECT 1 AS x FROM materials WHERE item = '4-1-2'") is None
    (v1,) = [json.loads(line) for line in cli("arc1", "materials", "history", "D-1", "4-1-2", "--json").stdout.splitlines()]
    assert (v1["ended_how"], v1["reason"]) == ("withdrawn", "误归档")
    assert verify(archive).ok


def test_a_dossier_identity_change_applies_only_when_approved_and_a_direct_edit_is_caught(desk):
    archive, station, cli = desk
    change = _change_id(cli("arc1", "dossiers", "edit", "D-1", "--set", "name=张叁", "--set", "post=科长",
                            "--reason", "户籍更正").stdout)
    assert archive.catalogue.one("SELECT name FROM dossiers")["name"] == "张三"
    cli("arc2", "changes", "approve", change)
    row = archive.catalogue.one("SELECT name, sex, post FROM dossiers")
    assert (row["name"], row["sex"], row["post"]) == ("张叁", "男", "科长")
    assert verify(archive).ok
    with behind_the_archive(archive) as db:
        db.execute("UPDATE dossiers SET sex = '女'")
    (problem,) = verify(archive).problems
    assert "dossier D-1" in str(problem) and "sex" in str(problem)


def test_search_finds_dossiers_by_name_category_and_date(desk):
    archive, station, cli = desk
    out = cli("arc1", "search", "--name", "张", "--category", "4-1", "--json").stdout
    (hit,) = [json.loads(line) for line in out.splitlines()]
    assert (hit["archive_no"], hit["matching"]) == ("D-1", "4-1-2")
    assert cli("arc1", "search", "--archive-no", "X").stdout.strip() == "none"


def test_search_by_the_date_a_material_was_formed_lists_the_matching_items(desk):
    """--from and --to keep the dossiers with a material formed in the period and name those materials."""
    archive, station, cli = desk
    scan(station, {"archive_no": "D-2", "name": "李四"}, {"item": "1-1", "title": "履历表", "date_formed": "2019-03-01"},
         "synthetic:seed=4,sheets=1")
    scan(station, {"archive_no": "D-2"}, {"item": "7-1", "title": "嘉奖", "date_formed": "2021-06-30"},
         "synthetic:seed=5,sheets=1")
    assert len(sync(station).committed) == 2

    def found(*args):
        return [(r["archive_no"], r["matching"]) for r in
                map(json.loads, cli("arc1", "search", *args, "--json").stdout.splitlines())]

    assert found("--from", "2020-01-01") == [("D-2", "7-1")]
    assert found("--from", "2019-01-01", "--to", "2021-12-31") == [("D-2", "1-1,7-1")]
    assert found("--to", "2018-12-31") == []
    assert found("--category", "7", "--to", "2020-01-01") == []


def test_the_catalogue_listing_is_for_archive_staff_not_administrators(desk):
    archive, station, cli = desk
    refused = cli("adm1", "ls", "D-1", check=False)
    assert refused.returncode == 77 and "may not catalogue read" in refused.stderr
    assert "履历表" in cli("arc1", "ls", "D-1").stdout


def test_an_archivist_of_another_unit_can_neither_see_nor_propose_nor_decide_a_change(desk):
    """Four-eyes changes belong to the dossier's own unit: another unit's archivists are refused and logged,
    and their change listing leaves the dossier out."""
    archive, station, cli = desk
    from central import audit

    outsider = users.add(archive, "arc9", "arc9", ["archivist"], ["unit-b"])

    def as_outsider(*args):
        return cli_in_process("quire-central", "--home", archive.config.home, *args, env={"QUIRE_TOKEN": outsider},
                              check=False)

    proposed = as_outsider("materials", "withdraw", "D-1", "4-1-2", "--reason", "不属于本人")
    assert proposed.returncode == 77 and "no authority over unit unit-a" in proposed.stderr
    edited = as_outsider("dossiers", "edit", "D-1", "--set", "post=科员", "--reason", "改职务")
    assert edited.returncode == 77 and "no authority over unit unit-a" in edited.stderr
    change = _change_id(cli("arc1", "materials", "withdraw", "D-1", "4-1-2", "--reason", "重复归档").stdout)
    decided = as_outsider("changes", "approve", change)
    assert decided.returncode == 77 and "no authority over unit unit-a" in decided.stderr
    assert archive.catalogue.one("SELECT state FROM changes WHERE id = ?", [change])["state"] == "proposed"
    listed = as_outsider("changes", "ls", "--json")
    assert listed.returncode == 0 and listed.stdout.strip() == ""
    assert [json.loads(line)["id"] for line in cli("arc2", "changes", "ls", "--json").stdout.splitlines()] == [
        int(change)]
    denied = [(e["by"], e["action"]) for e in audit.entries(archive) if e["event"] == "access.denied"]
    assert denied == [("user:arc9", "change.withdraw_material"), ("user:arc9", "change.edit_dossier"),
                      ("user:arc9", "change.withdraw_material")]
