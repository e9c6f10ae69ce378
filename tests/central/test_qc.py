"""QC acceptance (数据验收): a random sample of each batch judged by someone who did not scan it; a
returned batch reaches the station as a rescan request naming the pages."""

import json

import pytest

from central import qc, users
from station.scan import scan
from station.sync import sync
from tests.conftest import cli_in_process


@pytest.fixture(params=["disk", "scaled"])
def blob_kind(request):
    """Every test here runs on both kinds of storage: embedded (SQLite, disk) and scaled (PostgreSQL, S3)."""
    return request.param


@pytest.mark.parametrize("pages, expected", [(300, 15), (200, 10), (100, 10), (12, 10), (4, 4), (201, 11)])
def test_the_sample_is_at_least_five_percent_and_at_least_ten_pages(pages, expected):
    assert qc.sample_size(pages, 0.05, 10) == expected


@pytest.fixture
def batches(central, station):
    archive, address = central
    scan(station, {"archive_no": "D-9"}, {"item": "1-1", "title": "履历表"}, "synthetic:seed=4,sheets=6",
         operator="王五")
    scan(station, {"archive_no": "D-9"}, {"item": "2-1", "title": "自传"}, "synthetic:seed=5,sheets=1",
         operator="王五")
    sync(station)
    tokens = {"qc1": users.add(archive, "qc1", "质检员", ["inspector"], ["unit-a"]),
              "wang": users.add(archive, "wang", "王五", ["inspector"], ["unit-a"])}
    ids = {r["item"]: r["bundle_id"] for r in archive.catalogue.query("SELECT item, bundle_id FROM materials")}

    def cli(who, *args, check=True):
        return cli_in_process("quire-central", "--home", archive.config.home, *args, env={"QUIRE_TOKEN": tokens[who]},
                              check=check)

    return archive, station, ids, cli


def test_an_inspector_lists_only_batches_of_their_own_units(batches):
    archive, station, ids, cli = batches
    mine = [json.loads(line) for line in cli("qc1", "qc", "ls", "--json").stdout.splitlines()]
    assert sorted(b["item"] for b in mine) == ["1-1", "2-1"] and {b["unit"] for b in mine} == {"unit-a"}
    outsider = users.add(archive, "qc9", "外单位质检员", ["inspector"], ["unit-b"])
    theirs = cli_in_process("quire-central", "--home", archive.config.home, "qc", "ls", "--json",
                            env={"QUIRE_TOKEN": outsider})
    assert theirs.stdout.strip() == ""


def test_the_operator_of_a_batch_cannot_inspect_it(batches):
    archive, station, ids, cli = batches
    out = cli("wang", "qc", "start", ids["1-1"][:12], check=False)
    assert out.returncode == 77 and "another inspector must accept it" in out.stderr


def test_a_batch_below_the_acceptance_share_is_returned_and_the_station_told_which_pages(batches):
    archive, station, ids, cli = batches
    cli("qc1", "qc", "start", ids["1-1"][:12])
    sample = qc.status(archive, ids["1-1"])["sample"]
    assert len(sample) == 10 and len(set(sample)) == 10 and set(sample) <= set(range(1, 13))
    bad = sample[3]
    early = cli("qc1", "qc", "decide", ids["1-1"][:12], check=False)
    assert early.returncode != 0 and "not judged yet" in early.stderr
    cli("qc1", "qc", "judge", ids["1-1"][:12], "--good", *[n for n in sample if n != bad],
        "--bad", bad, "--reason", "底部被裁切")
    decided = cli("qc1", "qc", "decide", ids["1-1"][:12], check=False)
    assert decided.returncode == 3 and "returned: 90.0 %" in decided.stdout
    home = station.config.home
    cli_in_process("quire-station", "--home", home, "sync")
    status = cli_in_process("quire-station", "--home", home, "status").stdout
    assert "RESCAN D-9 1-1" in status and f"pages {bad} (底部被裁切)" in status
    (request,) = json.loads(cli_in_process("quire-station", "--home", home, "status", "--json").stdout)["rescan_requests"]
    assert (request["bundle_id"], request["pages"]) == (ids["1-1"], [{"n": bad, "reason": "底部被裁切"}])
    # The request is kept, and not repeated by the next sync.
    cli_in_process("quire-station", "--home", home, "sync")
    assert len(json.loads(cli_in_process("quire-station", "--home", home, "status", "--json").stdout)["rescan_requests"]) == 1


def test_a_good_batch_is_accepted_and_every_decision_logged(batches):
    archive, station, ids, cli = batches
    cli("qc1", "qc", "start", ids["2-1"][:12])
    sample = qc.status(archive, ids["2-1"])["sample"]
    assert sample == [1, 2]  # a batch smaller than ten pages is sampled whole
    cli("qc1", "qc", "judge", ids["2-1"][:12], "--good", *sample)
    assert "accepted" in cli("qc1", "qc", "decide", ids["2-1"][:12]).stdout
    listed = {json.loads(line)["item"]: json.loads(line)["qc"] for line in cli("qc1", "qc", "ls", "--json").stdout.splitlines()}
    assert listed == {"1-1": "waiting", "2-1": "accepted"}
    from central import audit

    events = [(e["event"], e["by"]) for e in audit.entries(archive) if e["event"].startswith("qc.")]
    assert events == [("qc.start", "user:qc1"), ("qc.accept", "user:qc1")]
