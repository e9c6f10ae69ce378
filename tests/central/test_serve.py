"""`quire-central serve` as a technician starts it."""

import socket

from tests.conftest import run_cli


def test_serve_on_a_busy_port_says_so_without_a_traceback(tmp_path):
    home = tmp_path / "central"
    run_cli("quire-central", "--home", home, "init")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_cli("quire-central", "--home", home, "serve", "--listen", f"127.0.0.1:{port}",
                       "--no-advertise", check=False)
    assert proc.returncode == 69
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr and "choose another" in proc.stderr
    assert "Traceback" not in proc.stderr and "listening on" not in proc.stdout
