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


def syscall_groups() -> dict[str, list[str]]:
    """``@group`` → its members (syscalls and nested ``@group``s), as this machine's systemd defines them."""
    out = subprocess.run(["systemd-analyze", "syscall-filter", "--no-pager"], capture_output=True, text=True,
                         check=True).stdout
    groups: dict[str, list[str]] = {}
    current = None
    for line in out.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.strip(), [])
        elif line.startswith(" ") and current is not None and not line.strip().startswith("#") and line.strip():
            current.append(line.strip())
        elif not line.strip() or line.startswith("#"):
            current = None
    return groups


def syscall_allowed(filters: list[str], syscall: str, groups: dict[str, list[str]]) -> bool:
    """Whether a unit's SystemCallFilter= lines, in order, let ``syscall`` through (systemd.exec(5): the
    first line decides allow- or deny-list; later lines add to or take from it; @default is always allowed)."""
    def expand(names: str) -> set[str]:
        found: set[str] = set()
        todo = names.split()
        while todo:
            name = todo.pop()
            if name.startswith("@"):
                todo.extend(groups[name])
            else:
                found.add(name)
        return found

    if not filters:
        return True
    allow_list = not filters[0].startswith("~")
    listed: set[str] = expand("@default") if allow_list else set()
    for value in filters:
        names = expand(value.lstrip("~"))
        if value.startswith("~") == (not allow_list):   # same kind as the first line: add
            listed |= names
        else:
            listed -= names
    return (syscall in listed) == allow_list
