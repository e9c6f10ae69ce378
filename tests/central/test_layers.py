"""The archive's layers hold: no import points up, none goes round in a circle, none hides in a function."""

import ast
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CENTRAL = ROOT / "central"
# Imported where they are used, on purpose: matplotlib takes about a second to import and only the
# chart commands draw, so every other command and the server would pay it for nothing.
HEAVY_OPTIONAL = {"matplotlib"}


def test_import_contracts_are_kept():
    """lint-imports checks pyproject's [tool.importlinter] contracts: layers, no circles, and an audit log
    store that knows no bundles."""
    lint = Path(sys.executable).with_name("lint-imports")
    assert lint.exists(), f"{lint} is missing: install the dev extra (import-linter)"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "protos"),
                                                       os.environ.get("PYTHONPATH", "")]))
    # No cache: parallel runs never share one, and a stale one never hides a new import.
    done = subprocess.run([str(lint), "--no-cache", "--no-logo", str(ROOT / "pyproject.toml")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, f"import contracts broken:\n{done.stdout}\n{done.stderr}"
    assert "0 broken" in done.stdout and "3 kept" in done.stdout, done.stdout


def test_every_module_has_its_layer():
    """A new module of central/ (or subpackage) is placed in a layer, so the contract sees its imports."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    layers = next(c for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers")["layers"]
    placed = {name.strip() for layer in layers for name in re.split(r"[:|]", layer)}
    modules = {f"central.{p.stem}" for p in CENTRAL.glob("*.py") if p.stem != "__init__"}
    modules |= {f"central.{p.parent.name}" for p in CENTRAL.glob("*/__init__.py")}
    assert not modules - placed, f"place these in a layer of pyproject's [tool.importlinter]: {sorted(modules - placed)}"


def _function_local_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        for inner in ast.walk(node):
            if isinstance(inner, ast.Import):
                names = [alias.name for alias in inner.names]
            elif isinstance(inner, ast.ImportFrom):
                base = "." * inner.level + (inner.module or "")
                names = [base] if inner.module else [base + alias.name for alias in inner.names]
            else:
                continue
            for name in names:
                if name.split(".")[0] not in HEAVY_OPTIONAL:
                    found.append(f"{path.relative_to(ROOT)}:{inner.lineno} imports {name} inside a function")
    return sorted(set(found))


def test_no_function_local_imports():
    """A function-local import that dodges a circle means the layers are wrong: none in central/."""
    found = [line for path in sorted(CENTRAL.rglob("*.py")) for line in _function_local_imports(path)]
    assert not found, "move these imports to the top of their module:\n" + "\n".join(found)


def test_the_local_import_check_sees_a_hidden_import(tmp_path):
    """The check above finds an import inside a method, and lets the documented heavy one through."""
    module = tmp_path / "m.py"
    module.write_text("import json\n\nclass A:\n    def f(self):\n        from . import audit\n"
                      "        import matplotlib\n        return audit\n", encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys.modules[__name__], "ROOT", tmp_path)
        assert _function_local_imports(module) == ["m.py:5 imports .audit inside a function"]
