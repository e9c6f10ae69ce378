"""A private PostgreSQL cluster for tests: Debian's server binaries, initdb into a temporary folder,
reachable only through a Unix socket in that folder (no TCP listener), run as a non-root user when
the tests run as root (initdb and postgres refuse root)."""

import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

SUPERUSER = "quire"


def server_bin() -> Path:
    """The newest installed PostgreSQL's bin folder (Debian: /usr/lib/postgresql/VERSION/bin)."""
    found = sorted((p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists()),
                   key=lambda p: int(re.sub(r"\D", "", p.parent.name) or 0))
    if not found:
        raise RuntimeError("no PostgreSQL server under /usr/lib/postgresql; install Debian's postgresql package")
    return found[-1]


class PgCluster:
    """One cluster: ``start``, ``kill`` (-9, as a crash), ``stop``, ``remove``; ``conninfo`` for psycopg."""

    def __init__(self, root: Path | None = None, user: str = "postgres"):
        self.bin = server_bin()
        # Not under pytest's own temporary folders: those are 0700 root's, which the server's user cannot enter.
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="quire-pg-"))
        self.data, self.socket_dir, self.log = self.root / "data", self.root / "sock", self.root / "postgres.log"
        self.as_user = os.geteuid() == 0
        self.user = pwd.getpwnam(user if self.as_user else pwd.getpwuid(os.geteuid()).pw_name)
        self.port = 5432   # names only the socket file (.s.PGSQL.5432) in the private folder
        self.proc: subprocess.Popen | None = None
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(mode=0o700, exist_ok=True)
        for path in (self.root, self.socket_dir):
            os.chown(path, self.user.pw_uid, self.user.pw_gid)
        os.chmod(self.root, 0o700)
        if not (self.data / "PG_VERSION").exists():
            self._run([str(self.bin / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "--auth=trust",
                       "--encoding=UTF8", "--locale=C.UTF-8", "--no-instructions"])

    def _as_server_user(self) -> dict:
        return {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []} if self.as_user else {}

    def _run(self, cmd: list[str]) -> None:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=self.root,
                              env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, **self._as_server_user())
        if proc.returncode:
            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")

    @property
    def conninfo(self) -> str:
        return f"host={self.socket_dir} port={self.port} user={SUPERUSER} dbname=postgres"

    def start(self, timeout_s: float = 60) -> "PgCluster":
        """Start the server (a child of this process) and wait until it takes connections."""
        import psycopg

        log = open(self.log, "ab")
        try:
            self.proc = subprocess.Popen(
                [str(self.bin / "postgres"), "-D", str(self.data), "-k", str(self.socket_dir), "-p", str(self.port),
                 "-c", "listen_addresses=", "-c", "unix_socket_permissions=0700", "-c", "fsync=on"],
                stdout=log, stderr=subprocess.STDOUT, cwd=self.root, start_new_session=True,
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, **self._as_server_user())
        finally:
            log.close()
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited {self.proc.returncode}; its log:\n{self.tail()}")
            try:
                psycopg.connect(self.conninfo, connect_timeout=2).close()
                return self
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"postgres did not take connections within {timeout_s} s:\n{self.tail()}")
                time.sleep(0.1)

    def kill(self) -> None:
        """kill -9 the postmaster and its backends, as a power cut or an OOM kill would."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        """A fast shutdown (SIGINT: roll back open transactions, checkpoint, exit)."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
