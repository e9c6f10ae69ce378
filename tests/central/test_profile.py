"""Standards profiles are known by their content: the SHA-256 of the resolved profile rides on
receipts, quarantine rows and the audit log, and a profile edited without a new version cannot
judge bundles under its old name and version."""

import json
import re

import pytest

from station import outbox
from station.sync import sync
from tests.central.test_quarantine import seal
from tests.central.test_standards import page
from tests.conftest import cli_in_process, make_station, register


@pytest.fixture(params=["disk", "scaled"])
def blob_kind(request):
    """Every test here runs on both kinds of storage: embedded (SQLite, disk) and scaled (PostgreSQL, S3)."""
    return request.param


COUNTY = ('format = "quire.profile/1"\nname = "county"\nversion = {version}\ntitle = "县档案馆"\n'
          'extends = "gbt33870"\n[resolution]\nmin_dpi = {min_dpi}\n')


@pytest.fixture
def county(tmp_path, central):
    """unit-a judged by the archive's own profile 'county' v1 (assigned through the CLI), and a station in it."""
    archive, address = central
    path = archive.config.home / "profiles" / "county.toml"
    path.write_text(COUNTY.format(version=1, min_dpi=200))
    cli(archive, "profiles", "assign", "unit-a", "county")
    st = register(archive, address, make_station(tmp_path / "st", address, sync_retry_span_s=0))
    yield archive, st, path
    st.close()


def cli(archive, *args, check=True):
    return cli_in_process("quire-central", "--home", archive.config.home, *args, check=check)


def shown_sha256(archive, name: str) -> str:
    return re.search(r"^sha256\s+([0-9a-f]{64})$", cli(archive, "profiles", "show", name).stdout, re.M).group(1)


def test_receipts_quarantine_rows_and_the_audit_log_carry_the_profile_hash(county):
    archive, st, _ = county
    sha256 = shown_sha256(archive, "county")
    good, low = seal(st, [page()], "1-1"), seal(st, [page(dpi=150)], "1-2")
    report = sync(st)
    assert report.committed == [good] and list(report.rejected) == [low]
    standards = json.loads(outbox.get(st.store, good)["receipt"])["standards"]
    assert (standards["profile"], standards["version"], standards["sha256"]) == ("county", 1, sha256)
    held = json.loads(cli(archive, "quarantine", "show", low, "--json").stdout)
    assert (held["profile"], held["profile_version"], held["profile_sha256"]) == ("county", 1, sha256)
    entries = [json.loads(line) for line in cli(archive, "audit", "ls", "--json").stdout.splitlines()]
    assigned = [e for e in entries if e["event"] == "profile.assign" and e["unit"] == "unit-a"]
    assert [(e["profile"], e["version"], e["sha256"]) for e in assigned] == [("county", 1, sha256)]
    pinned = [e for e in entries if e["event"] == "profile.pin" and e["profile"] == "county"]
    assert [(e["version"], e["sha256"]) for e in pinned] == [(1, sha256)]


def test_a_profile_edited_without_a_new_version_judges_nothing_until_its_version_is_raised(county):
    archive, st, path = county
    before = shown_sha256(archive, "county")
    first = seal(st, [page()], "1-1")
    report = sync(st)
    assert report.committed == [first], report
    path.write_text(COUNTY.format(version=1, min_dpi=400))   # stricter rules under the same name and version
    after = shown_sha256(archive, "county")
    waiting = seal(st, [page()], "1-2")
    report = sync(st)
    # Not judged by rules the label never meant: the bundle waits on the station, nothing quarantined.
    assert not report.committed and not report.rejected and outbox.get(st.store, waiting)["state"] == "uploading"
    told = report.failed[waiting]
    assert f"{path}: profile county v1 judged this archive's bundles with content sha256 {before}" in told
    assert f"the file now resolves to sha256 {after}; a changed profile needs a new version" in told
    refused = cli(archive, "profiles", "assign", "unit-b", "county", check=False)
    assert refused.returncode == 78 and before in refused.stderr and after in refused.stderr
    assert "Traceback" not in refused.stderr
    path.write_text(COUNTY.format(version=2, min_dpi=400))
    report = sync(st)
    assert list(report.rejected) == [waiting], report
    assert "standards profile county v2 not met" in report.rejected[waiting]


def test_judging_a_unit_reads_the_catalogue_once_and_follows_another_process(archive, monkeypatch):
    # At 50 stations on PostgreSQL each commit asked three times (assignment, default, pin) for one name.
    from central import profile

    asked = []
    query = archive.catalogue.query
    monkeypatch.setattr(archive.catalogue, "query", lambda sql, *a, **k: asked.append(sql) or query(sql, *a, **k))
    assert profile.for_unit(archive, "unit-x").name == "tests-150dpi"   # the first use confirms the pin
    asked.clear()
    assert profile.for_unit(archive, "unit-x").name == "tests-150dpi"
    assert len(asked) == 1, asked
    # Another process (the CLI opens its own archive) moves the default, then assigns the unit its own.
    cli(archive, "profiles", "default", "dat31")
    assert profile.for_unit(archive, "unit-x").name == "dat31"
    cli(archive, "profiles", "assign", "unit-x", "gbt33870")
    assert profile.for_unit(archive, "unit-x").name == "gbt33870"
    assert profile.for_unit(archive, "unit-y").name == "dat31"
