"""The udev rule: udev itself reads it without complaint, it covers every scanner family Quire has a
profile for, and it grants the service's group, read-write, and nothing more."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from station import profiles
from tests.systemd.tools import REPO, SYSTEMD_DIR, missing, need_root, need_tool, unit_settings

RULE = REPO / "hardware" / "70-quire-scanners.rules"


def _rule_lines() -> list[str]:
    return [line for line in RULE.read_text().splitlines() if line.strip() and not line.startswith("#")]


def test_udev_reads_the_rule_without_complaint(tmp_path):
    need_root()
    need_tool("udevadm")
    need_tool("unshare")
    rules = tmp_path / "rules.d"
    rules.mkdir()
    shutil.copy(RULE, rules)
    group = tmp_path / "group"
    group.write_text(Path("/etc/group").read_text() + "quire:x:64999:\n")
    device = next((p for p in ("/sys/class/net/lo", "/sys/devices/virtual/mem/null") if Path(p).exists()), None)
    if device is None:
        pytest.fail("no device in /sys for 'udevadm test' to process")
    # In a private mount namespace, our rule is the only local one and the group exists.
    script = (f"mount --bind {rules} /etc/udev/rules.d && mount --bind {group} /etc/group && "
              f"udevadm test --action=add {device}")
    proc = subprocess.run(["unshare", "--mount", "sh", "-c", script], capture_output=True, text=True)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0 and output.startswith("unshare:"):
        missing(f"no private mount namespace here ({output.strip()})")
    assert f"Reading rules file: /etc/udev/rules.d/{RULE.name}" in output, output[-2000:]
    complaints = [line for line in output.splitlines() if f"{RULE.name}:" in line]
    assert complaints == []


def test_every_family_profile_is_covered_by_usb_vendor():
    covered = set(re.findall(r'ATTR\{idVendor\}=="([0-9a-f]{4})"', RULE.read_text()))
    for profile in profiles.load():
        if profile.generic or profile.name == "sane-test":
            continue
        assert profile.usb_vendors, f"profile {profile.name} lists no USB vendor ids"
        assert set(profile.usb_vendors) <= covered, f"udev rule misses {profile.name}: {profile.usb_vendors}"


def test_rule_grants_the_services_group_read_write_and_nothing_else():
    group = unit_settings(SYSTEMD_DIR / "quire-station.service")["Service.Group"][0]
    grants = [line for line in _rule_lines() if "GROUP=" in line]
    assert grants
    for line in grants:
        assert f'GROUP="{group}"' in line and 'MODE="0660"' in line, line
        assert "RUN" not in line and "OWNER" not in line, line
        # Every grant is narrowed by a vendor id and a second property (SANE's database or a product name).
        assert 'ATTR{idVendor}=="' in line and ("libsane_matched" in line or "ATTR{product}" in line), line
    assert _rule_lines()[0].startswith('ACTION=="remove", GOTO=')
