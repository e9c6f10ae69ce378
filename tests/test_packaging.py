"""Quire built as a wheel and installed elsewhere, as a station image or an archive host gets it."""

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from email.parser import Parser
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_wheel_carries_the_scanner_profiles_and_splits_station_and_archive_needs(tmp_path):
    source = tmp_path / "source"  # built from a copy: an in-tree build leaves build/ in the checkout
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(source),
                    "-w", str(tmp_path / "dist")], check=True, capture_output=True, cwd=tmp_path)
    wheel = next((tmp_path / "dist").glob("quire-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        metadata = Parser().parsestr(zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode())
    shipped = {Path(n).name for n in names if n.startswith("quire_hardware/profiles/")}
    assert {p.name for p in (REPO / "hardware" / "profiles").glob("*.toml")} <= shipped
    # Every Python package of the checkout (a subpackage left out of pyproject's list installs nowhere).
    packages = {p.parent.relative_to(REPO).as_posix() + "/__init__.py" for top in ("station", "central")
                for p in (REPO / top).rglob("__init__.py") if "__pycache__" not in p.parts}
    assert packages <= set(names), sorted(packages - set(names))
    # The archive's console and the station's kiosk: their templates and the vendored htmx they both serve.
    for web in ("central/web", "station/web"):
        assert {p.relative_to(REPO).as_posix() for p in (REPO / web).rglob("*")
                if p.is_file() and "__pycache__" not in p.parts} <= set(names), web

    requires = metadata.get_all("Requires-Dist")
    by_extra = {}
    for line in requires:
        name = line.split(";")[0].split(">")[0].split("=")[0].strip()
        extra = line.split("extra ==")[1].strip().strip("'\"") if "extra ==" in line else ""
        by_extra.setdefault(name, set()).add(extra)
    assert by_extra["matplotlib"] == {"central"} and by_extra["python-sane"] == {"station"}
    assert "" in by_extra["grpcio"] and "" in by_extra["pynacl"]

    # Installed into a fresh environment (dependencies borrowed from this one, Quire itself not), the
    # station finds its profiles inside the installed package, nowhere near this checkout.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(subprocess.run([venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    out = subprocess.run([venv / "bin" / "python", "-c",
                          "from station import profiles; p = profiles.load(); "
                          "print(profiles.SHIPPED_DIR); print(sorted(x.name for x in p))"],
                         capture_output=True, text=True, cwd=tmp_path, env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    where, names_loaded = out.stdout.splitlines()
    assert Path(where).is_relative_to(site) and "generic" in names_loaded and "sane-test" in names_loaded
