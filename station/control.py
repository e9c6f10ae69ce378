"""The local control socket between the CLI and the station daemon.

One JSON object per line over a unix stream socket. The client sends one request
(``{"v": 1, "op": …}``); the daemon answers with zero or more event lines and one final line
carrying ``"ok"``. Who may connect is checked twice: the socket file is mode 0660 in the control
group (the kernel refuses others), and the daemon reads the caller's credentials (SO_PEERCRED) and
accepts only root, its own user and members of that group.
"""

import grp
import json
import logging
import os
import pwd
import socket
import socketserver
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import ConfigError, NotPermitted, ServiceUnavailable, StationError

VERSION = 1
MAX_LINE_BYTES = 1 << 20
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Peer:
    pid: int
    uid: int
    gid: int

    @property
    def user(self) -> str:
        try:
            return pwd.getpwuid(self.uid).pw_name
        except KeyError:
            return str(self.uid)


def peer_of(sock: socket.socket) -> Peer:
    """The process at the other end of a connected unix socket, as the kernel reports it."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return Peer(*struct.unpack("3i", raw))


def peer_allowed(peer: Peer, own_uid: int, group_gid: int) -> bool:
    """Root, the daemon's own user, and members of the control group may control the station."""
    if peer.uid in (0, own_uid) or peer.gid == group_gid:
        return True
    try:
        # The group database, not /proc: the unit's ProtectProc= hides other users' processes.
        return group_gid in os.getgrouplist(pwd.getpwuid(peer.uid).pw_name, peer.gid)
    except KeyError:
        return False


Handler = Callable[[dict, Callable[[dict], None], Peer], dict]


class ControlServer:
    """Serves the control socket on its own threads; ``handler`` runs once per request."""

    def __init__(self, path: Path, handler: Handler, group: str | None = None):
        self.path = Path(path)
        self.handler = handler
        self.own_uid = os.geteuid()
        try:
            self.group_gid = grp.getgrnam(group).gr_gid if group else os.getegid()
        except KeyError:
            raise ConfigError(f"control_group {group!r} does not exist; create it "
                              f"(groupadd {group}) or fix station.toml") from None
        self.group_name = group or _group_name(self.group_gid)
        self._server: socketserver.ThreadingUnixStreamServer | None = None
        self._thread: threading.Thread | None = None

    def ensure_free(self) -> None:
        """Refuse to go on when another daemon answers on the socket: only one may own the scanner."""
        if _answers(self.path):
            raise ServiceUnavailable(f"another station service is already running (it answers on {self.path}); "
                                     "only one process may own the scanner — stop it first")

    def start(self) -> None:
        """Bind the socket (refusing when another daemon answers on it) and start serving."""
        self.ensure_free()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.path.unlink()  # left behind by a daemon that was killed
        except FileNotFoundError:
            pass
        outer = self

        class _Handler(socketserver.StreamRequestHandler):
            def handle(self):
                outer._handle(self.connection, self.rfile)

        server = socketserver.ThreadingUnixStreamServer(str(self.path), _Handler, bind_and_activate=False)
        server.daemon_threads = True
        server.server_bind()
        os.chmod(self.path, 0o660)
        if os.stat(self.path).st_gid != self.group_gid:
            os.chown(self.path, -1, self.group_gid)
        server.server_activate()
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.2,), name="control", daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        self._server = None
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    def _handle(self, conn: socket.socket, rfile) -> None:
        def emit(message: dict) -> None:
            # MSG_NOSIGNAL: a caller that hung up must not kill the daemon (SIGPIPE may be at its default).
            conn.sendall((json.dumps(message, ensure_ascii=False) + "\n").encode(), socket.MSG_NOSIGNAL)

        peer = peer_of(conn)
        try:
            line = rfile.readline(MAX_LINE_BYTES)  # read first, so a refused caller still hears why
            if not peer_allowed(peer, self.own_uid, self.group_gid):
                log.warning("refused control request from %s (uid %d, pid %d)", peer.user, peer.uid, peer.pid)
                raise NotPermitted(
                    f"user {peer.user} may not control the station service; a technician adds them with "
                    f"'sudo usermod -aG {self.group_name} {peer.user}' (then log in again)")
            try:
                request = json.loads(line)
            except ValueError:
                raise StationError("malformed request to the station service") from None
            if request.get("v") != VERSION:
                raise StationError(f"control protocol version {request.get('v')!r} is not {VERSION}; "
                                   "the CLI and the station service are different Quire versions")
            reply = self.handler(request, emit, peer)
            emit(dict(reply, ok=True))
        except StationError as exc:
            _try(emit, {"ok": False, "error": str(exc), "exit_code": exc.exit_code})
        except (BrokenPipeError, ConnectionResetError):
            pass  # the caller went away; whatever it started goes on
        except Exception:
            log.exception("control request failed")
            _try(emit, {"ok": False, "error": "internal error in the station service; see "
                        "'journalctl -u quire-station'", "exit_code": 70})


def connect(path: Path) -> socket.socket | None:
    """A connection to the running daemon, or None when none is running."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.connect(str(path))
        return sock
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        return None
    except PermissionError:
        sock.close()
        group = _group_name(_stat_gid(path))
        user = Peer(os.getpid(), os.getuid(), os.getgid()).user
        raise NotPermitted(f"cannot reach the station service at {path}: permission denied; a technician adds "
                           f"you with 'sudo usermod -aG {group} {user}' (then log in again)") from None


def request(sock: socket.socket, message: dict, on_event: Callable[[dict], None] | None = None) -> dict:
    """Send one request on a connection from ``connect``; pass events on; return the final reply.

    A refusal or failure from the daemon is raised as a StationError with the daemon's exit code.
    """
    with sock, sock.makefile("rb") as stream:
        try:
            sock.sendall((json.dumps(dict(message, v=VERSION), ensure_ascii=False) + "\n").encode(),
                         socket.MSG_NOSIGNAL)
        except BrokenPipeError:
            pass  # the daemon answered and hung up already (a refusal): read what it said
        for line in stream:
            reply = json.loads(line)
            if "ok" not in reply:
                if on_event:
                    on_event(reply)
                continue
            if reply["ok"]:
                return reply
            err = StationError(reply.get("error", "the station service refused"))
            err.exit_code = reply.get("exit_code", 1)
            raise err
    raise ServiceUnavailable("the station service closed the connection before answering "
                             "(it may be stopping); 'systemctl status quire-station' shows why")


def _answers(path: Path) -> bool:
    try:
        sock = connect(path)
    except NotPermitted:
        return True
    if sock is None:
        return False
    sock.close()
    return True


def _try(emit, message: dict) -> None:
    try:
        emit(message)
    except OSError:
        pass


def _stat_gid(path: Path) -> int:
    try:
        return os.stat(path).st_gid
    except OSError:
        return -1


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except (KeyError, OverflowError):
        return "the station's control group"
