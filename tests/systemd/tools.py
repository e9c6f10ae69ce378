"""What the systemd and hardware tests need from the machine, and a filesystem root for systemd-analyze."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SYSTEMD_DIR = REPO / "systemd"
UNITS = ["quire-station.service", "quire-central.service"]


def missing(what: str) -> None:
    """Skip on a developer's machine; in CI (CI=true) nothing may be skipped, so fail."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} (CI must not skip: 'make test' installs the Debian packages in APT_PACKAGES)")
    pytest.skip(what)


def need_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        missing(f"{name} is not installed")
    return path


def need_root() -> None:
    if os.geteuid() != 0:
        missing("needs root")


def unit_root(tmp_path: Path) -> Path:
    """A root holding systemd's own units, ours as the install script lays them out, and the
    programs their ExecStart= lines name — what `systemd-analyze --root` needs to check them."""
    root = tmp_path / "root"
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    subprocess.run([str(SYSTEMD_DIR / "install-station.sh"), "--files-only"], check=True, capture_output=True,
                   env={**os.environ, "DESTDIR": str(root)})
    shutil.copy(SYSTEMD_DIR / "quire-central.service", root / "etc/systemd/system")
    target = root / "opt/quire/.venv/bin"
    target.mkdir(parents=True)
    for tool in ("quire-station", "quire-central"):
        shutil.copy(Path(sys.executable).parent / tool, target / tool)
    return root


def unit_settings(path: Path) -> dict[str, list[str]]:
    """``Section.Key`` → every value it is given, in order (systemd allows repeats)."""
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        settings.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return settings
