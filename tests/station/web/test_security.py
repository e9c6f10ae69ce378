"""The kiosk against someone who should not drive it: no session, a forged form, guessed PINs; and the
technician's operator commands."""

import json
import signal
import socket
import sqlite3
import subprocess
import time

from station.operators import FREE_FAILURES
from tests.conftest import cli_in_process
from tests.station.web.conftest import OPERATOR, PIN, QUIRE_STATION, Client, add_operator, station_home


def test_operator_commands_ask_the_pin_twice_and_refuse_what_is_wrong(tmp_path):
    home = station_home(tmp_path, None)
    differ = add_operator(home, OPERATOR, PIN, "135790")
    assert differ.returncode == 2 and "the two PINs differ; nothing was changed" in differ.stderr
    short = add_operator(home, OPERATOR, "123")
    assert short.returncode == 2 and "a PIN is 6 to 12 digits" in short.stderr
    assert add_operator(home, OPERATOR, PIN).returncode == 0
    again = add_operator(home, OPERATOR, PIN)
    assert again.returncode == 2 and f"operator add {OPERATOR} --reset" in again.stderr
    listed = json.loads(cli_in_process("quire-station", "--home", home, "operator", "ls", "--json").stdout)
    assert [(o["name"], o["disabled_at"]) for o in listed] == [(OPERATOR, None)]
    # The PIN is kept as an argon2id hash in a file only the station's user reads.
    db = home / "operators.db"
    assert db.stat().st_mode & 0o077 == 0
    with sqlite3.connect(db) as conn:
        (stored,) = conn.execute("SELECT pin_hash FROM operators").fetchone()
    assert stored.startswith("$argon2id$") and PIN not in stored
    cli_in_process("quire-station", "--home", home, "operator", "disable", OPERATOR)
    assert "disabled" in cli_in_process("quire-station", "--home", home, "operator", "ls").stdout
    unknown = cli_in_process("quire-station", "--home", home, "operator", "disable", "李四", check=False)
    assert unknown.returncode == 2 and "no operator '李四'" in unknown.stderr
    help_text = subprocess.run([str(QUIRE_STATION), "operator", "add", "--help"], capture_output=True, text=True).stdout
    assert "asked twice" in help_text


def test_no_session_no_forged_form_no_guessed_pin(tmp_path, kiosks):
    home = station_home(tmp_path, None, source="synthetic:sheets=1", dpi=50)
    assert add_operator(home, OPERATOR, PIN).returncode == 0
    kiosk = kiosks(home)
    outsider = Client(kiosk.url)

    # No session: the screen, its stream, its pages and its buttons send to the sign-in page, start nothing.
    status, headers, _ = outsider.request("/")
    assert status == 303 and headers["location"] == "/login"
    assert outsider.request("/events")[0] == 401
    assert outsider.request("/page?d=D-1&i=1-1&n=1")[0] == 303
    assert outsider.request("/queue", {"dossier": "D-1", "item": "1-1", "title": "履历表"})[0] == 303
    # A sign-in form not served to this browser (no login cookie) is refused.
    status, _, body = outsider.request("login", {"login_token": "x", "name": OPERATOR, "pin": PIN})
    assert status == 403 and "登录表单已失效" in body

    operator = Client(kiosk.url)
    status, headers, _ = operator.sign_in()
    assert status == 303 and headers["location"] == "/"
    cookie = next(c for c in operator.jar if c.name == "quire_kiosk")
    assert cookie.has_nonstandard_attr("HttpOnly") and cookie.get_nonstandard_attr("SameSite") == "strict"
    status, headers, body = operator.request("/")
    assert status == 200 and OPERATOR in body
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    # A state change without the session's CSRF token (a page elsewhere posting into the kiosk) is refused.
    status, _, body = operator.request("/queue", {"dossier": "D-1", "item": "1-1", "title": "履历表"})
    assert status == 403 and "CSRF 校验未通过" in body
    status, _, body = operator.request("/queue", {"csrf": "forged", "dossier": "D-1", "item": "1-1", "title": "履历表"})
    assert status == 403
    assert "队列为空" in operator.request("/")[2]
    # With it, the same form queues the material, under the signed-in name.
    status, _, _ = operator.request("/queue", {"csrf": operator.csrf(), "dossier": "D-1", "item": "1-1",
                                               "title": "履历表"})
    assert status == 303
    queued = json.loads(cli_in_process("quire-station", "--home", home, "queue", "ls", "--json").stdout)
    assert [(j["dossier"]["archive_no"], j["operator"]) for j in queued] == [("D-1", OPERATOR)]
    # A bad item number is refused, saying what is wrong.
    status, _, body = operator.request("/queue", {"csrf": operator.csrf(), "dossier": "D-1", "item": "x", "title": "表"})
    assert status == 400 and "未能登记" in body
    status, _, body = operator.request("/queue", {"csrf": operator.csrf(), "dossier": "D-1", "item": "1-2",
                                                  "title": "表", "pages": "十"})
    assert status == 400 and "未能登记" in body and "页数" in body

    # Wrong PINs: told how many tries are left, then locked — and then even the right PIN waits.
    guesser = Client(kiosk.url)
    for left in range(FREE_FAILURES - 1, 0, -1):
        status, _, body = guesser.sign_in(OPERATOR, "000000")
        assert status == 401 and f"再错 {left} 次将暂时锁定" in body
    status, _, body = guesser.sign_in(OPERATOR, "000000")
    assert status == 429 and "已暂时锁定" in body
    status, _, body = guesser.sign_in(OPERATOR, PIN)
    assert status == 429 and "已暂时锁定" in body and "quire_kiosk" not in {c.name for c in guesser.jar}
    assert "locked until" in cli_in_process("quire-station", "--home", home, "operator", "ls").stdout
    # The technician's reset unlocks; disabling ends a session at its next request.
    assert add_operator(home, OPERATOR, "97531864", None, "--reset").returncode == 0
    assert guesser.sign_in(OPERATOR, "97531864")[0] == 303
    cli_in_process("quire-station", "--home", home, "operator", "disable", OPERATOR)
    assert guesser.request("/")[0] == 303 and operator.request("/")[0] == 303
    assert "kiosk: 张三 signed in" in kiosk.output() and PIN not in kiosk.output()


def test_a_kiosk_port_already_taken_is_logged_and_the_station_scans_on(tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    home = station_home(tmp_path, None, source="synthetic:sheets=1", dpi=50, kiosk_port=port)
    log = tmp_path / "daemon.log"
    with open(log, "w") as out:
        daemon = subprocess.Popen([str(QUIRE_STATION), "--home", str(home), "daemon"], stdout=out,
                                  stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while "ready:" not in log.read_text():
                assert daemon.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
            assert (f"kiosk not served: it cannot listen on 127.0.0.1:{port} (Address already in use); set kiosk_port "
                    "in station.toml to a free port (or kiosk = false)") in log.read_text()
            scanned = cli_in_process("quire-station", "--home", home, "scan", "--dossier", "D-1", "--material", "1-1",
                                     "--title", "履历表")
            assert "sealed as bundle" in scanned.stderr
        finally:
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(timeout=60) == 0
            taken.close()
