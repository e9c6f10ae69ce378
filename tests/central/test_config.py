"""central.toml through the real CLI: exact types, declared ranges, unknown keys refused, every
problem in one message naming the file and the key, exit 78 (EX_CONFIG)."""

from tests.conftest import run_cli


def _refused(home, *args) -> str:
    proc = run_cli("quire-central", "--home", home, *args, check=False)
    assert proc.returncode == 78, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    return proc.stderr


def test_insecure_false_as_a_string_is_refused_not_read_as_true(tmp_path):
    (tmp_path / "central.toml").write_text('insecure = "false"\n')
    stderr = _refused(tmp_path, "info")
    assert f"{tmp_path / 'central.toml'}: insecure: must be true or false (got the string 'false')" in stderr


def test_every_bad_key_is_reported_at_once(tmp_path):
    (tmp_path / "central.toml").write_text('workers = "eight"\nmax_chunk_bytes = -1\nadvertise = "no"\n'
                                           'listen = "7443"\nlisten_port = 7443\n')
    stderr = _refused(tmp_path, "info")
    assert stderr.startswith(f"quire-central: {tmp_path / 'central.toml'}: ")
    for problem in ("workers: must be a whole number (got the string 'eight')",
                    "max_chunk_bytes: must be at least 4096 (got -1)",
                    "advertise: must be true or false (got the string 'no')",
                    "listen: must be HOST:PORT",
                    "listen_port: unknown setting; known here: advertise, backup_password_file, backup_repo, blobs, "
                    "blobs_credentials, catalogue, insecure, listen, max_chunk_bytes, "):
        assert problem in stderr


def test_a_command_line_override_is_checked_too(tmp_path):
    stderr = _refused(tmp_path / "archive", "serve", "--listen", "7443")
    assert "with listen from the command line: listen: must be HOST:PORT" in stderr
