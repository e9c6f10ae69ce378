"""The command-line tools, run as a user runs them."""

import argparse
import json
import stat

from PIL import Image

from tests.conftest import run_cli


def _subcommands(parser, prefix=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield prefix + (name,), sub
                yield from _subcommands(sub, prefix + (name,))


def test_every_command_is_documented():
    from central.cli import build_parser as central_parser
    from station.cli import build_parser as station_parser

    for tool, parser in (("quire-station", station_parser()), ("quire-central", central_parser())):
        commands = list(_subcommands(parser))
        assert commands
        for path, sub in commands:
            assert sub.description, f"{tool} {' '.join(path)} has no description"
            for action in sub._actions:
                if action.dest != "help" and not isinstance(action, argparse._SubParsersAction):
                    assert action.help, f"{tool} {' '.join(path)} {action.dest} has no help"


def test_help_works_on_every_subcommand(capsys):
    """Every command the parsers hold answers --help with its description and every option's help."""
    import pytest

    from central import cli as central_cli
    from station import cli as station_cli

    for tool, module in (("quire-station", station_cli), ("quire-central", central_cli)):
        commands = list(_subcommands(module.build_parser()))
        assert len(commands) > 10
        for path, sub in commands:
            with pytest.raises(SystemExit) as exit_:
                module.main([*path, "--help"])
            out = " ".join(capsys.readouterr().out.split())
            assert exit_.value.code == 0, f"{tool} {' '.join(path)} --help"
            assert out.startswith(f"usage: {tool} {' '.join(path)}"), out[:80]
            texts = [sub.description] + [a.help for a in sub._actions if a.help and a.help != argparse.SUPPRESS]
            for text in texts:
                assert " ".join(text.split()).replace("%%", "%") in out, f"{tool} {' '.join(path)}: {text!r} not shown"


def test_init_creates_a_private_key_and_keeps_it(tmp_path):
    home = tmp_path / "st"
    first = run_cli("quire-station", "--home", home, "init", "--id", "st-room-1").stdout
    key = home / "keys" / "station.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "st-room-1" in first and "quire-central stations add st-room-1 --key" in first
    again = run_cli("quire-station", "--home", home, "init").stdout
    assert again == first


def test_commands_before_init_say_what_to_do(tmp_path):
    proc = run_cli("quire-station", "--home", tmp_path / "none", "status", check=False)
    assert proc.returncode == 78 and "run 'quire-station init'" in proc.stderr


def test_bad_material_number_is_refused_before_scanning(tmp_path):
    home = tmp_path / "st"
    run_cli("quire-station", "--home", home, "init")
    proc = run_cli("quire-station", "--home", home, "scan", "--dossier", "D-1", "--material", "4-2",
                   "--title", "x", check=False)
    assert proc.returncode == 2 and "4-1-2" in proc.stderr


def test_process_prints_one_record_per_page(tmp_path):
    from station.capture.synthetic import render_page

    inputs = []
    for i in range(2):
        page = render_page(seed=5, index=i, dpi=150)
        path = tmp_path / f"in{i}.png"
        Image.fromarray(page.image).save(path, dpi=(150, 150))
        inputs.append(path)
    out = tmp_path / "out"
    proc = run_cli("quire-station", "--home", tmp_path / "st", "process", *inputs, "--out", out)
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(records) == 2
    keys = {"input", "output", "skew_deg", "rotation_deg", "orientation", "crop", "blank", "blank_score",
            "colour", "colour_reason", "codec", "dpi", "bytes", "seconds"}
    for record, path in zip(records, inputs):
        assert keys <= record.keys()
        assert record["input"] == str(path)
        written = Image.open(record["output"])
        assert written.info["dpi"][0] == 150 and record["dpi"] == 150
        assert record["bytes"] == (out / (path.stem + ".jpg")).stat().st_size
