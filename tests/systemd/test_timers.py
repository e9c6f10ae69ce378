"""The backup and scrub units as systemd sees them: verified, hardened like the archive's own service,
their timers nightly and catching up after a night the machine was off, and their commands real."""

import re
import shlex
import shutil
import subprocess

import pytest

from central.cli import build_parser
from tests.systemd.tools import SYSTEMD_DIR, need_tool, unit_root, unit_settings

JOBS = {"quire-backup": "backup", "quire-scrub": "scrub"}
UNITS = [f"{name}.{kind}" for name in JOBS for kind in ("service", "timer")]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    need_tool("systemd-analyze")
    root = unit_root(tmp_path_factory.mktemp("units"))
    for unit in UNITS:
        shutil.copy(SYSTEMD_DIR / unit, root / "etc/systemd/system")
    return root


@pytest.mark.parametrize("unit", UNITS)
def test_unit_passes_systemd_analyze_verify(root, unit):
    proc = subprocess.run(["systemd-analyze", "verify", f"--root={root}", unit], capture_output=True, text=True)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr


@pytest.mark.parametrize("name", JOBS)
def test_service_exposure_is_at_most_2(root, name):
    unit = f"{name}.service"
    proc = subprocess.run(["systemd-analyze", "security", "--offline=yes", f"--root={root}", "--no-pager", unit],
                          capture_output=True, text=True)
    found = re.search(rf"Overall exposure level for {re.escape(unit)}: (\d+\.\d+)", proc.stdout)
    assert found and float(found.group(1)) <= 2.0, proc.stdout[-2000:] + proc.stderr


@pytest.mark.parametrize("name", JOBS)
def test_timer_runs_nightly_and_makes_up_a_missed_night(name):
    timer = unit_settings(SYSTEMD_DIR / f"{name}.timer")
    assert re.fullmatch(r"\*-\*-\* \d\d:\d\d", timer["Timer.OnCalendar"][0])
    assert timer["Timer.Persistent"] == ["true"] and timer["Install.WantedBy"] == ["timers.target"]


def test_the_scrub_runs_after_the_backup():
    backup, scrub = (unit_settings(SYSTEMD_DIR / f"{n}.timer")["Timer.OnCalendar"][0] for n in JOBS)
    assert backup < scrub


@pytest.mark.parametrize("name", JOBS)
def test_service_runs_a_command_quire_central_has_once_as_the_quire_user(name):
    service = unit_settings(SYSTEMD_DIR / f"{name}.service")
    assert service["Service.Type"] == ["oneshot"] and service["Service.User"] == ["quire"]
    words = shlex.split(service["Service.ExecStart"][0])
    assert words[0].endswith("/quire-central") and JOBS[name] in words
    args = build_parser().parse_args(words[1:])
    assert args.command == JOBS[name] and args.home == "/var/lib/quire/central"
