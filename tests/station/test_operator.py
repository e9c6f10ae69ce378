"""The station as an operator meets it: a real non-root user in the station's control group, the station
home laid out as systemd/install-station.sh lays it out (its own init step, as the station's own user), and
the real CLI run as that operator with runuser. The tests run as root; the users and group are made here."""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from quire import keys
from tests.systemd.test_install import SCRIPT
from tests.systemd.tools import REPO, missing, need_root, need_tool

QUIRE_STATION = REPO / ".venv/bin/quire-station"


@dataclass
class Site:
    owner: str          # the station's user, as 'quire'
    operator: str       # a member of the control group, as one in 'quire-operators'
    home: Path
    socket: Path
    fingerprint: str


def _run(*cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)


def _let_others_through(*paths: Path) -> list[tuple[Path, int]]:
    """Let other users traverse (o+x, never list) each directory above ``paths`` — on a fresh machine the
    venv's interpreter lives under root's 0700 home; returns what to put back afterwards."""
    changed = []
    for path in paths:
        for parent in reversed(path.parents):
            mode = parent.stat().st_mode & 0o7777
            if not mode & 0o001 and all(parent != p for p, _ in changed):
                changed.append((parent, mode))
                parent.chmod(mode | 0o001)
    return changed


@pytest.fixture(scope="module")
def site():
    need_root()
    for tool in ("runuser", "useradd", "groupadd", "userdel", "groupdel", "bash"):
        need_tool(tool)
    tag = f"{os.getpid() % 100000}"
    opened = []
    group, owner, operator = f"qops{tag}", f"qst{tag}", f"qop{tag}"
    root = Path(tempfile.mkdtemp(prefix="quire-operator-", dir="/tmp"))
    try:
        # As systemd/quire.sysusers: the station's user is in the control group; the operator is added to it.
        _run("groupadd", "--system", group, check=True)
        _run("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "--user-group",
             "-G", group, owner, check=True)
        _run("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "-G", group, operator,
             check=True)
        opened = _let_others_through(REPO / ".venv", Path(os.path.realpath(sys.executable)))
        reached = _run("runuser", "-u", operator, "--", QUIRE_STATION, "--help")
        if reached.returncode != 0:
            missing(f"user {operator} cannot run {QUIRE_STATION} ({reached.stderr.strip()}); every directory "
                    "above the venv and its interpreter needs o+x")
        root.chmod(0o755)
        home, run = root / "station", root / "run"
        for path, mode in ((home, 0o711), (run, 0o755)):   # as quire.tmpfiles and RuntimeDirectory= make them
            path.mkdir(mode=mode)
            path.chmod(mode)
            shutil.chown(path, owner, owner)
        socket = run / "station.sock"
        (home / "station.toml").write_text(f'source = "synthetic:sheets=1"\ndpi = 50\ncontrol_socket = "{socket}"\n'
                                           f'control_group = "{group}"\nannounce = false\n')
        (home / "station.toml").chmod(0o644)
        # The installer's own step, its runuser aimed at this test's station user.
        _run("bash", "-c", f"""source {SCRIPT}; PREFIX={REPO}; STATION_HOME={home}; STATION_ID=st-ops
                               runuser() {{ command runuser -u {owner} "${{@:3}}"; }}
                               init_station""", check=True)
        fingerprint = keys.fingerprint(bytes(keys.load_key_file(home / "keys/station.key").verify_key))
        yield Site(owner, operator, home, socket, fingerprint)
    finally:
        for path, mode in opened:
            path.chmod(mode)
        _run("userdel", operator)
        _run("userdel", owner)
        _run("groupdel", owner)
        _run("groupdel", group)
        shutil.rmtree(root, ignore_errors=True)


def as_user(user: str, site: Site, *args) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUIRE_", "SANE_"))}
    return _run("runuser", "-u", user, "--", QUIRE_STATION, "--home", site.home, *args, env=env, cwd="/")


@pytest.fixture
def service(site):
    """The station service running as the station's user, with the unit's umask."""
    proc = subprocess.Popen(["runuser", "-u", site.owner, "--", "sh", "-c", 'umask 0077 && exec "$@"', "sh",
                             str(QUIRE_STATION), "--home", str(site.home), "daemon"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while as_user(site.operator, site, "queue", "ls").returncode != 0:
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else "no answer"
        time.sleep(0.3)
    yield proc
    proc.terminate()
    err = proc.communicate(timeout=60)[1]
    assert "Traceback" not in err, err


def test_an_operator_sees_the_station_and_its_service_without_the_private_key(site, service):
    # It printed a PermissionError traceback on station.key.
    proc = as_user(site.operator, site, "status")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stdout.splitlines()
    assert re.fullmatch(r"service running \(pid \d+\): idle, queue empty · outbox 0 bundles · central not "
                        r"configured", lines.pop(2)), proc.stdout
    assert lines == [
        f"station st-ops  home {site.home}",
        f"key fingerprint {site.fingerprint}",
        "queued: 0 batches ('quire-station queue ls' lists them)",
        f"batches, outbox and receipts: only {site.owner} and root may read them: "
        f"sudo -u {site.owner} quire-station --home {site.home} status",
    ]
    # The technician's full status shows the same key in the same form.
    full = as_user(site.owner, site, "status")
    assert full.returncode == 0 and f"key fingerprint {site.fingerprint}" in full.stdout.splitlines()


def test_an_operator_queues_and_scans_through_the_service(site, service):
    queued = as_user(site.operator, site, "queue", "add", "--dossier", "D-0042", "--material", "4-1-2",
                     "--title", "学历证明")
    assert queued.returncode == 0, queued.stderr
    assert f"by {site.operator}" in as_user(site.operator, site, "queue", "ls").stdout
    scanned = as_user(site.operator, site, "scan")
    assert scanned.returncode == 0 and "Traceback" not in scanned.stderr, scanned.stderr
    assert "D-0042 4-1-2: 2 pages, sealed as bundle" in scanned.stderr


def test_what_needs_the_station_user_says_so_and_how(site):
    for command in (["sync"], ["purge"], ["checkpoint"], ["outbox", "retry", "--all"],
                    ["enroll", "--central", "127.0.0.1:9"], ["init"]):
        proc = as_user(site.operator, site, *command)
        assert proc.returncode == 77 and "Traceback" not in proc.stderr, (command, proc.stderr)
        assert proc.stderr == (
            f"quire-station: only {site.owner} (the station's user) and root may read the station's key and store "
            f"in {site.home}, and this command needs them; ask the technician to run it as that user: "
            f"sudo -u {site.owner} quire-station --home {site.home} {' '.join(command)}\n")


def test_status_without_the_service_says_what_to_do(site):
    proc = as_user(site.operator, site, "status")
    assert proc.returncode == 69 and "Traceback" not in proc.stderr
    assert proc.stderr == (
        f"quire-station: the station service is not running (nothing answers on {site.socket}), and only "
        f"{site.owner} and root may read the station's store in {site.home}; start the service (sudo systemctl "
        f"start quire-station), or ask the technician for the full status: sudo -u {site.owner} quire-station "
        f"--home {site.home} status\n")


def test_doctor_as_an_operator_never_calls_a_healthy_store_damaged(site, service):
    # It said the store "cannot be read … restore them from backup", and FAILed the checks it could not make.
    proc = as_user(site.operator, site, "doctor", "--zeroconf-timeout", "0.2")
    assert "Traceback" not in proc.stderr and "restore" not in proc.stdout and "could not check" not in proc.stdout
    lines = proc.stdout.splitlines()
    not_checked = (f"not checked: {site.operator} may not read the station's key and store "
                   f"(only {site.owner} and root may)")
    for name in ("key", "store", "clock", "central", "zeroconf"):
        assert f"WARN {name:<9} {not_checked}" in lines, proc.stdout
    assert lines.count(f"{'':15}fix: run doctor as root: sudo quire-station doctor") == 5
    assert any(line.startswith("OK   service   running") for line in lines), proc.stdout
    assert proc.returncode == 0, proc.stdout
    # Root, for whom the same store is readable, finds it sound and the key in the one printed form.
    root = _run(QUIRE_STATION, "--home", site.home, "doctor", "--zeroconf-timeout", "0.2")
    assert any(line.startswith("OK   store") for line in root.stdout.splitlines()), root.stdout
    assert f"key fingerprint {site.fingerprint}" in root.stdout
