"""station.toml through the real CLI: exact types, declared ranges, unknown keys refused, every
problem in one message naming the file and the key, exit 78 (EX_CONFIG)."""

import os

from tests.conftest import run_cli


def _refused(tmp_path, text: str) -> tuple[str, str]:
    home = tmp_path / "st"
    home.mkdir()
    (home / "station.toml").write_text(text)
    proc = run_cli("quire-station", "--home", home, "status", check=False)
    assert proc.returncode == os.EX_CONFIG == 78, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    return proc.stderr, str(home / "station.toml")


def test_insecure_false_as_a_string_is_refused_not_read_as_true(tmp_path):
    stderr, path = _refused(tmp_path, 'central = "archive.example:7443"\ninsecure = "false"\n')
    assert f"{path}: insecure: must be true or false (got the string 'false')" in stderr


def test_every_bad_key_is_reported_at_once(tmp_path):
    stderr, path = _refused(tmp_path, 'announce = "no"\nretention_days = "5"\nchunk_bytes = -1\n'
                                      'colour = "auto"\n[pipeline]\nworkers = "eight"\n')
    assert stderr.startswith(f"quire-station: {path}: ")
    for problem in ("announce: must be true or false (got the string 'no')",
                    "retention_days: must be a number (got the string '5')",
                    "chunk_bytes: must be at least 4096 (got -1)",
                    "colour: unknown setting; known here: announce, ",
                    "pipeline.workers: must be a whole number (got the string 'eight')"):
        assert problem in stderr


def test_a_whole_number_setting_takes_no_fraction_and_a_seconds_setting_takes_a_whole_number(tmp_path):
    stderr, _ = _refused(tmp_path, "dpi = 300.5\nsync_timeout_s = 10\n")
    assert "dpi: must be a whole number (got 300.5)" in stderr and "sync_timeout_s" not in stderr
