"""Sealing (封存) through the CLI: two archivists of the unit seal a dossier with a reason; while sealed
it is listed as sealed and nobody consults, exports or changes it; two archivists unseal it; all logged."""

import pytest

from central import audit, users
from central.verify import verify
from station.scan import scan
from station.sync import sync
from tests.conftest import behind_the_archive, cli_in_process


@pytest.fixture(params=["disk", "scaled"])
def blob_kind(request):
    """Every test here runs on both kinds of storage: embedded (SQLite, disk) and scaled (PostgreSQL, S3)."""
    return request.param


@pytest.fixture
def desk(central, station):
    """Dossier D-1 catalogued; archivists arc1, arc2 of unit-a and arc-b of unit-b, reader li, officer sec."""
    archive, address = central
    scan(station, {"archive_no": "D-1", "name": "张三"}, {"item": "1-1", "title": "履历表"}, "synthetic:seed=1,sheets=1")
    assert len(sync(station).committed) == 1
    tokens = {name: users.add(archive, name, name, [role], [unit]) for name, role, unit in (
        ("arc1", "archivist", "unit-a"), ("arc2", "archivist", "unit-a"), ("arc-b", "archivist", "unit-b"),
        ("li", "reader", "unit-a"), ("sec", "security_officer", "unit-a"))}

    def cli(who, *args, check=True):
        return cli_in_process("quire-central", "--home", archive.config.home, *args, env={"QUIRE_TOKEN": tokens[who]},
                              check=check)

    return archive, station, cli


def _change(out: str) -> str:
    return out.split("#")[1].split()[0]


def test_a_sealed_dossier_refuses_consultation_export_and_change_until_unsealed(desk, tmp_path):
    archive, station, cli = desk
    other_unit = cli("arc-b", "seal", "D-1", "--reason", "审查", check=False)
    assert other_unit.returncode == 77 and "no authority over unit unit-a" in other_unit.stderr
    change = _change(cli("arc1", "seal", "D-1", "--reason", "纪检审查期间封存").stdout)
    assert "sealed" not in cli("arc1", "ls").stdout.split("\n")[2]  # proposed only: not sealed yet
    own = cli("arc1", "changes", "approve", change, check=False)
    assert own.returncode == 77 and "a second person must decide it" in own.stderr
    cli("arc2", "changes", "approve", change)
    assert cli("arc1", "ls").stdout.splitlines()[-1].rstrip().endswith("sealed")

    refusals = [
        cli("arc1", "export", "D-1", "--out", tmp_path / "bag", check=False),
        cli("li", "consult", "request", "D-1", "--purpose", "考察", check=False),
        cli("arc1", "dossiers", "edit", "D-1", "--set", "post=科长", "--reason", "升职", check=False),
        cli("arc1", "materials", "withdraw", "D-1", "1-1", "--reason", "错档", check=False),
        cli("arc1", "seal", "D-1", "--reason", "again", check=False),
    ]
    for refused in refusals:
        assert refused.returncode == 77 and "dossier D-1 is sealed (封存)" in refused.stderr, refused.stderr
    scan(station, {"archive_no": "D-1"}, {"item": "4-1-2", "title": "考核"}, "synthetic:seed=2,sheets=1")
    (reason,) = sync(station).rejected.values()
    assert "dossier D-1 is sealed (封存): nothing is added to it" in reason
    assert not (tmp_path / "bag").exists()
    denied = [e["action"] for e in audit.entries(archive) if e["event"] == "access.denied" and e["archive_no"] == "D-1"]
    assert denied[-5:] == ["dossier.export", "consultation.file", "change.edit_dossier", "change.withdraw_material",
                           "change.seal_dossier"]

    unseal = _change(cli("arc2", "unseal", "D-1", "--reason", "审查结束").stdout)
    cli("arc1", "changes", "approve", unseal)
    assert not cli("arc1", "ls").stdout.splitlines()[-1].rstrip().endswith("sealed")
    cli("arc1", "export", "D-1", "--out", tmp_path / "bag")
    logged = [(e["event"], e["reason"], e["by"]) for e in audit.entries(archive)
              if e["event"] in ("dossier.seal", "dossier.unseal")]
    assert logged == [("dossier.seal", "纪检审查期间封存", "user:arc2"), ("dossier.unseal", "审查结束", "user:arc1")]
    assert verify(archive).ok


def test_a_seal_lifted_behind_the_archives_back_is_found_by_verify(desk):
    archive, station, cli = desk
    cli("arc2", "changes", "approve", _change(cli("arc1", "seal", "D-1", "--reason", "封存").stdout))
    with behind_the_archive(archive) as db:
        db.execute("UPDATE dossiers SET sealed_by_change = NULL")
    problems = [str(p) for p in verify(archive).problems]
    assert any(p.startswith("CatalogueMismatch dossier D-1: sealed_by_change is None in the catalogue, but the "
                            "audit log says sealed by change #") for p in problems), problems
