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
# SQL is written only in central/store, so that the catalogue can move to another database under it. These
# copy a whole catalogue: the SQLite snapshot tools (the file as a whole, its journal mode set) and the move
# from one database to another (every table, row by row).
WHOLE_CATALOGUE_TOOLS = {"backup.py", "replicate.py", "migrate.py"}
SQL = re.compile(r"\s*(SELECT\s|INSERT\s+(OR\s+\w+\s+)?INTO\s|UPDATE\s+\w+\s+SET\s|DELETE\s+FROM\s"
                 r"|CREATE\s+(TABLE|INDEX|TRIGGER)\s|ALTER\s+TABLE\s|DROP\s+(TABLE|INDEX)\s|PRAGMA\s|WITH\s+\w+\s+AS\s*\()")


def test_import_contracts_are_kept():
    """lint-imports checks pyproject's [tool.importlinter] contracts: layers, no circles, an audit log
    store that knows no bundles, and rules that neither read nor write the archive."""
    lint = Path(sys.executable).with_name("lint-imports")
    assert lint.exists(), f"{lint} is missing: install the dev extra (import-linter)"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "protos"),
                                                       os.environ.get("PYTHONPATH", "")]))
    # No cache: parallel runs never share one, and a stale one never hides a new import.
    done = subprocess.run([str(lint), "--no-cache", "--no-logo", str(ROOT / "pyproject.toml")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, f"import contracts broken:\n{done.stdout}\n{done.stderr}"
    assert "0 broken" in done.stdout and "4 kept" in done.stdout, done.stdout


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


def _sql_outside_store(path: Path) -> list[str]:
    """Statements written in ``path`` and calls that run SQL: a cursor's execute, the catalogue's query or one."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.match(node.value):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} writes SQL {node.value[:40]!r}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            name, owner = node.func.attr, node.func.value
            on_catalogue = isinstance(owner, ast.Attribute) and owner.attr == "catalogue"
            if name in ("execute", "executemany", "executescript") or (on_catalogue and name in ("query", "one")):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} runs SQL through .{name}()")
    return sorted(set(found))


def test_no_sql_outside_the_store():
    """Only central/store speaks SQL (one module per table): every other module calls it, so none of them
    knows whether the catalogue is SQLite or PostgreSQL."""
    found = [line for path in sorted(CENTRAL.rglob("*.py")) if "store" not in path.relative_to(CENTRAL).parts[:1]
             and path.relative_to(CENTRAL).as_posix() not in WHOLE_CATALOGUE_TOOLS for line in _sql_outside_store(path)]
    assert not found, "move this SQL into the central/store module that owns the table:\n" + "\n".join(found)


def test_the_sql_check_sees_statements_and_calls(tmp_path):
    """The check above finds SQL in a string, an f-string and a call, and lets prose through."""
    module = tmp_path / "m.py"
    module.write_text('"""Select what to show."""\n\n'
                      'def f(archive, db, key, t):\n'
                      '    db.execute("DELETE FROM signin_failures WHERE key = :key", {"key": key})\n'
                      '    archive.catalogue.one(f"SELECT * FROM {t}")\n'
                      '    return "UPDATE the page when it changes"\n', encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys.modules[__name__], "ROOT", tmp_path)
        assert _sql_outside_store(module) == [
            "m.py:4 runs SQL through .execute()", "m.py:4 writes SQL 'DELETE FROM signin_failures WHERE key = '",
            "m.py:5 runs SQL through .one()", "m.py:5 writes SQL 'SELECT * FROM '"]


# What only 'serve' needs: the gRPC servicers, the web console and its server, zeroconf.
SERVE_ONLY = ("central.cli_serve", "central.server", "central.web", "starlette", "uvicorn", "jinja2", "zeroconf")


def _loaded_by_a_command(modules: tuple[str, ...]) -> list[str]:
    """Which of ``modules`` a fresh process has loaded once the CLI has parsed an ordinary command."""
    probe = ("import sys, central.cli; central.cli.build_parser().parse_args(['ls'])\n"
             f"print(' '.join(m for m in {modules!r} if m in sys.modules))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "protos"),
                                                       os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_commands_other_than_serve_do_not_import_what_serving_needs():
    """Every other command (and --help) starts without the servicers, the web console or zeroconf."""
    loaded = _loaded_by_a_command(SERVE_ONLY)
    assert loaded == [], f"imported by every command, though only 'serve' uses them: {loaded}"


def test_commands_loaded_when_run_name_modules_in_a_layer():
    """A command the CLI imports only when it runs names a module of the interface layer and a function in it;
    and the CLI's command table is the one place that imports by name."""
    cli = ast.parse((CENTRAL / "cli.py").read_text(encoding="utf-8"))
    named = [tuple(a.value for a in node.args) for node in ast.walk(cli) if isinstance(node, ast.Call)
             and isinstance(node.func, ast.Name) and node.func.id == "_loaded_when_run"]
    assert ("central.cli_serve", "cmd_serve") in named
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    layers = next(c for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers")["layers"]
    interfaces = {name.strip() for layer in layers[:3] for name in re.split(r"[:|]", layer)}
    for module, name in named:
        assert module in interfaces, f"{module} is loaded by the CLI when run: place it in an interface layer"
        assert f"def {name}(" in (ROOT / (module.replace(".", "/") + ".py")).read_text(encoding="utf-8")
    by_name = [str(path.relative_to(ROOT)) for path in sorted(CENTRAL.rglob("*.py"))
               if "import_module(" in path.read_text(encoding="utf-8")]
    # Besides the command table, only the places that open the storage kind a config names load its
    # module by name (PostgreSQL, an S3 bucket), so an archive on SQLite and disk never imports them.
    assert by_name == ["central/archive.py", "central/cli.py", "central/config.py", "central/store/catalogues.py"], (
        f"only the CLI's command table and the storage-kind openers import by name: {by_name}")


def test_an_archive_on_sqlite_and_disk_starts_without_the_scale_out_clients():
    """psycopg, boto3 and obstore cost every command about half a second at start; a command on the
    embedded default (SQLite and the home's blobs folder) loads none of them."""
    loaded = _loaded_by_a_command(("psycopg", "psycopg_pool", "boto3", "botocore", "obstore"))
    assert loaded == [], f"imported by a command on SQLite and disk: {loaded}"
