"""Single steps of systemd/install-station.sh, sourced into bash with runuser stubbed out, so they run
without root or systemd. The whole script was run under systemd-nspawn (a booted Debian 12); what
broke there is pinned here."""

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

from tests.systemd.tools import SYSTEMD_DIR, need_tool

SCRIPT = SYSTEMD_DIR / "install-station.sh"


def run_steps(tmp_path: Path, body: str) -> subprocess.CompletedProcess:
    """Source the script in a shell with a sudo-like umask 0022 and run ``body``: PREFIX is this venv,
    STATION_HOME a 0711 directory under tmp_path (as tmpfiles makes it), runuser runs as ourselves."""
    need_tool("bash")
    prefix = tmp_path / "opt"
    (prefix / ".venv/bin").mkdir(parents=True, exist_ok=True)
    tool = prefix / ".venv/bin/quire-station"
    if not tool.exists():
        tool.symlink_to(Path(sys.executable).parent / "quire-station")
    home = tmp_path / "station"
    home.mkdir(mode=0o711, exist_ok=True)
    home.chmod(0o711)
    shell = f"""
        umask 0022
        source {SCRIPT}
        PREFIX={prefix}; STATION_HOME={home}; STATION_ID=st-test
        runuser() {{ shift 3; "$@"; }}   # 'runuser -u quire -- CMD' runs CMD as the test's user
        {body}
    """
    env = {**os.environ, "QUIRE_STATION_HOME": str(home)}
    return subprocess.run(["bash", "-c", shell], capture_output=True, text=True, env=env, check=True)


def modes(home: Path) -> dict[str, int]:
    return {str(p.relative_to(home)): stat.S_IMODE(p.lstat().st_mode) for p in home.rglob("*") if not p.is_symlink()}


def test_sourcing_the_script_runs_nothing(tmp_path):
    proc = run_steps(tmp_path, "echo sourced")
    assert proc.stdout.strip() == "sourced"
    assert list((tmp_path / "station").iterdir()) == []


def test_init_leaves_nothing_in_the_station_home_for_group_or_others(tmp_path):
    # Under the sudo shell's umask 0022, init left station.db 0644 and pages/ 0755 inside the 0711 home:
    # any local user could read the store (dossier titles, operators) — seen on the nspawn install.
    proc = run_steps(tmp_path, "init_station")
    assert "station st-test" in proc.stdout
    found = modes(tmp_path / "station")
    assert "station.db" in found and "keys/station.key" in found and "pages" in found
    loose = {path: oct(mode) for path, mode in found.items() if mode & 0o077}
    assert not loose, loose
    assert stat.S_IMODE((tmp_path / "station").stat().st_mode) == 0o711   # the home keeps tmpfiles' mode


def test_rerun_tightens_an_earlier_install_and_keeps_its_key_and_config(tmp_path):
    home = tmp_path / "station"
    run_steps(tmp_path, '"$PREFIX/.venv/bin/quire-station" --home "$STATION_HOME" init --id st-test')   # the old way
    assert modes(home)["station.db"] & 0o044
    key = (home / "keys/station.key").read_bytes()
    (home / "station.toml").write_text('source = "sane:auto"\n')
    (home / "station.toml").chmod(0o644)

    run_steps(tmp_path, "init_station")
    found = modes(home)
    loose = {path: oct(mode) for path, mode in found.items() if mode & 0o077 and path != "station.toml"}
    assert not loose, loose
    assert found["station.toml"] == 0o644          # operators' CLI may read it
    assert (home / "keys/station.key").read_bytes() == key


def test_the_installer_names_one_way_to_register_the_station_enrolment_with_its_home(tmp_path):
    # It printed init's 'quire-central stations add … --key HEX' and its own enrol step together.
    proc = run_steps(tmp_path, "init_station && next_steps")
    home = tmp_path / "station"
    lines = proc.stdout.splitlines()
    assert f"station st-test at {home}" in lines
    fingerprint = next(line for line in lines if line.startswith("key fingerprint "))
    assert re.fullmatch(r"key fingerprint SHA256:[0-9a-f]{64}", fingerprint)
    assert f"       sudo -u quire quire-station --home {home} enroll --central HOST:PORT" in lines
    assert "stations add" not in proc.stdout and not re.search(r"[0-9a-f]{64}(?![0-9a-f])", proc.stdout.replace(
        fingerprint, ""))
