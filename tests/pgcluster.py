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
import uuid
from pathlib import Path
from urllib.parse import quote

from tests.childserver import ChildServer

SUPERUSER = "quire"


def server_bin() -> Path:
    """The newest installed PostgreSQL's bin folder (Debian: /usr/lib/postgresql/VERSION/bin)."""
    found = sorted((p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists()),
                   key=lambda p: int(re.sub(r"\D", "", p.parent.name) or 0))
    if not found:
        raise RuntimeError("no PostgreSQL server under /usr/lib/postgresql; install Debian's postgresql package")
    return found[-1]


class PgCluster(ChildServer):
    """One cluster: ``start``, ``kill`` (-9, as a crash), ``stop``, ``remove``; ``conninfo`` for psycopg."""

    what = "postgres"
    stop_signal = signal.SIGINT   # a fast shutdown: roll back open transactions, checkpoint, exit
    stop_group = False             # the postmaster ends its backends itself
    stop_grace_s = 30.0

    def __init__(self, root: Path | None = None, user: str = "postgres"):
        self.bin = server_bin()
        # Not under pytest's own temporary folders: those are 0700 root's, which the server's user cannot enter.
        root = Path(root) if root else Path(tempfile.mkdtemp(prefix="quire-pg-"))
        super().__init__(root, root / "postgres.log")
        self.data, self.socket_dir = self.root / "data", self.root / "sock"
        self.as_user = os.geteuid() == 0
        self.user = pwd.getpwnam(user if self.as_user else pwd.getpwuid(os.geteuid()).pw_name)
        self.port = 5432   # names only the socket file (.s.PGSQL.5432) in the private folder
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

    def url(self, dbname: str = "postgres") -> str:
        """A ``postgresql://`` URL for the archive's config: the socket folder as host, no password."""
        return f"postgresql://{SUPERUSER}@{quote(str(self.socket_dir), safe='')}:{self.port}/{dbname}"

    def create_database(self, template: str = "template1") -> str:
        """A fresh database, a copy of ``template`` (CREATE DATABASE copies files: fast); its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return self.url(name)

    def command(self) -> list[str]:
        return [str(self.bin / "postgres"), "-D", str(self.data), "-k", str(self.socket_dir), "-p", str(self.port),
                "-c", "listen_addresses=", "-c", "unix_socket_permissions=0700", "-c", "fsync=on"]

    def popen_options(self) -> dict:
        return {"env": {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, **self._as_server_user()}

    def ready(self) -> bool:
        import psycopg

        try:
            psycopg.connect(self.conninfo, connect_timeout=2).close()
            return True
        except psycopg.OperationalError:
            return False

    def start(self, timeout_s: float = 60) -> "PgCluster":
        """Start the server (a child of this process) and wait until it takes connections."""
        return self.launch(timeout_s)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
