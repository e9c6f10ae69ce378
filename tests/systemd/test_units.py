"""The units as systemd sees them: verified, hardened to an exposure of at most 2.0, and still able to
reach the scanner and the network; the users, directories and config template they rely on."""

import re
import subprocess
import tomllib

import pytest

from station import config as station_config
from station.errors import ConfigError
from tests.systemd.tools import (SYSTEMD_DIR, UNITS, need_root, need_tool, syscall_allowed, syscall_groups, unit_root,
                                 unit_settings)

MAX_EXPOSURE = 2.0


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    need_tool("systemd-analyze")
    return unit_root(tmp_path_factory.mktemp("units"))


@pytest.mark.parametrize("unit", UNITS)
def test_unit_passes_systemd_analyze_verify(root, unit):
    proc = subprocess.run(["systemd-analyze", "verify", f"--root={root}", unit], capture_output=True, text=True)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr


@pytest.mark.parametrize("unit", UNITS)
def test_unit_exposure_is_at_most_2(root, unit):
    proc = subprocess.run(["systemd-analyze", "security", "--offline=yes", f"--root={root}", "--no-pager", unit],
                          capture_output=True, text=True)
    found = re.search(rf"Overall exposure level for {re.escape(unit)}: (\d+\.\d+)", proc.stdout)
    assert found, proc.stdout + proc.stderr
    exposure = float(found.group(1))
    print(f"{unit}: exposure {exposure}")
    assert exposure <= MAX_EXPOSURE, proc.stdout


def test_station_unit_declares_the_daemons_contract():
    unit = unit_settings(SYSTEMD_DIR / "quire-station.service")
    assert unit["Service.Type"] == ["notify"] and unit["Service.NotifyAccess"] == ["main"]
    assert unit["Service.WatchdogSec"] and unit["Service.Restart"] == ["on-failure"]
    # Configuration errors exit with EX_CONFIG; systemd must not restart into the same error.
    assert str(ConfigError.exit_code) in unit["Service.RestartPreventExitStatus"][0].split()
    assert unit["Unit.StartLimitBurst"] and unit["Unit.StartLimitIntervalSec"]
    assert unit["Service.ExecStart"][0].endswith(" daemon")
    assert unit["Service.ExecStart"][0].startswith("/opt/quire/.venv/bin/quire-station ")


def test_station_unit_still_reaches_the_scanner_and_the_network():
    unit = unit_settings(SYSTEMD_DIR / "quire-station.service")
    assert unit["Service.DevicePolicy"] == ["closed"]
    assert "char-usb_device rw" in unit["Service.DeviceAllow"]
    assert unit.get("Service.PrivateDevices", ["no"]) == ["no"]
    families = " ".join(unit["Service.RestrictAddressFamilies"]).split()
    assert {"AF_INET", "AF_INET6", "AF_UNIX", "AF_NETLINK"} <= set(families)
    assert "Service.PrivateNetwork" not in unit and "Service.IPAddressDeny" not in unit
    # The control socket's directory is the one the config template names.
    assert unit["Service.RuntimeDirectory"] == ["quire"]


def test_station_unit_lets_the_daemon_give_its_socket_to_the_operators_group():
    # Under systemd, ~@privileged took chown(2) away too: the daemon died with EPERM on
    # chown(/run/quire/station.sock, -1, quire-operators) and never started (seen under systemd-nspawn).
    need_tool("systemd-analyze")
    groups = syscall_groups()
    filters = unit_settings(SYSTEMD_DIR / "quire-station.service")["Service.SystemCallFilter"]
    for syscall in ("chown", "fchown", "fchownat", "socket", "bind", "chmod"):
        assert syscall_allowed(filters, syscall, groups), syscall
    # ...while changing identity or loading modules stays refused.
    for syscall in ("setuid", "setresuid", "setgroups", "init_module", "mount", "setrlimit"):
        assert not syscall_allowed(filters, syscall, groups), syscall


def test_units_run_as_the_user_sysusers_creates():
    sysusers = (SYSTEMD_DIR / "quire.sysusers").read_text().split("\n")
    users = {line.split()[1] for line in sysusers if line.startswith("u ")}
    for name in UNITS:
        unit = unit_settings(SYSTEMD_DIR / name)
        assert unit["Service.User"][0] in users and unit["Service.Group"][0] in users


def test_sysusers_and_tmpfiles_create_the_user_groups_and_directories(tmp_path):
    need_tool("systemd-sysusers")
    need_tool("systemd-tmpfiles")
    need_root()
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    for name in ("passwd", "group", "shadow", "gshadow"):
        (root / "etc" / name).touch()
    subprocess.run(["systemd-sysusers", f"--root={root}", str(SYSTEMD_DIR / "quire.sysusers")],
                   check=True, capture_output=True)
    subprocess.run(["systemd-tmpfiles", f"--root={root}", "--create", str(SYSTEMD_DIR / "quire.tmpfiles")],
                   check=True, capture_output=True)
    passwd = {line.split(":")[0]: line.split(":") for line in (root / "etc/passwd").read_text().splitlines()}
    groups = {line.split(":")[0]: line.split(":") for line in (root / "etc/group").read_text().splitlines()}
    assert passwd["quire"][5] == "/var/lib/quire" and passwd["quire"][6] == "/usr/sbin/nologin"
    assert "quire" in groups["quire-operators"][3].split(",")  # the daemon's user owns the control socket's group
    assert "quire" in groups["scanner"][3].split(",")          # Debian's libsane udev ACLs
    uid = int(passwd["quire"][2])
    for path, mode in (("var/lib/quire/station", 0o711), ("var/lib/quire/central", 0o700), ("etc/quire", 0o755)):
        st = (root / path).stat()
        assert st.st_mode & 0o777 == mode, path
    assert (root / "var/lib/quire/station").stat().st_uid == uid


def test_config_template_is_a_valid_station_config():
    cfg = station_config.load(home="/var/lib/quire/station", config_file=SYSTEMD_DIR / "station.toml")
    assert cfg.source == "sane:auto"
    assert str(cfg.control_socket_path).startswith("/run/quire/")   # RuntimeDirectory=quire
    sysusers = (SYSTEMD_DIR / "quire.sysusers").read_text()
    assert f"g {cfg.control_group} " in sysusers


def test_install_script_lays_out_the_files_and_keeps_local_config(tmp_path):
    need_tool("bash")
    script = SYSTEMD_DIR / "install-station.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    env = {"DESTDIR": str(tmp_path), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    subprocess.run([str(script), "--files-only"], check=True, capture_output=True, env=env)
    for path, mode in (("etc/systemd/system/quire-station.service", 0o644),
                       ("usr/lib/sysusers.d/quire.conf", 0o644), ("usr/lib/tmpfiles.d/quire.conf", 0o644),
                       ("etc/udev/rules.d/70-quire-scanners.rules", 0o644), ("etc/quire/station.toml", 0o644)):
        assert (tmp_path / path).stat().st_mode & 0o777 == mode, path
    local = tmp_path / "etc/quire/station.toml"
    local.write_text('source = "sane:fujitsu:fi-7160:1234"\n')
    proc = subprocess.run([str(script), "--files-only"], check=True, capture_output=True, text=True, env=env)
    assert "keeping the existing /etc/quire/station.toml" in proc.stdout
    assert tomllib.loads(local.read_text())["source"] == "sane:fujitsu:fi-7160:1234"


def _seconds(value: str) -> float:
    units = {"s": 1, "sec": 1, "min": 60, "h": 3600}
    number = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value.strip())
    return float(number.group(1)) * units[number.group(2) or "s"]


@pytest.mark.parametrize("unit", UNITS)
def test_the_start_limit_spares_a_technicians_day_and_still_ends_a_crash_loop(unit):
    """systemd counts every start against StartLimitBurst, ordinary ones too: an install, a README restart
    and two crash restarts must leave room for more restarts by hand; a crash loop must still stop."""
    settings = unit_settings(SYSTEMD_DIR / unit)
    burst = int(settings["Unit.StartLimitBurst"][0])
    interval_s = _seconds(settings["Unit.StartLimitIntervalSec"][0])
    restart_s = _seconds(settings["Service.RestartSec"][0])
    ordinary = 1 + 1 + 2 + 5   # installer's start, the README's restart, two crashes, five restarts by hand
    assert burst > ordinary
    crash_loop_ends_after_s = burst * restart_s
    assert crash_loop_ends_after_s < interval_s and crash_loop_ends_after_s <= 180
