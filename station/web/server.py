"""Serving the kiosk from the station service's own process: uvicorn on a thread of its own."""

import asyncio
import ipaddress
import logging
import socket
import threading
import time
from dataclasses import dataclass

import uvicorn

from ..errors import ConfigError
from ..operators import Operators
from . import view
from .app import Kiosk as KioskState
from .app import create_app
from .events import Hub

log = logging.getLogger(__name__)


@dataclass
class Kiosk:
    """A running kiosk: its address, and how to stop it."""

    url: str
    server: uvicorn.Server
    thread: threading.Thread
    state: KioskState

    def stop(self) -> None:
        """End the event streams, finish requests in flight, close the socket and the kiosk's connections."""
        daemon = self.state.daemon
        if self.state.hub.publish in daemon.listeners:
            daemon.listeners.remove(self.state.hub.publish)
        self.state.hub.close()
        self.server.should_exit = True
        self.thread.join(timeout=30)
        for scan in self.state.scans:
            scan.join(timeout=5)   # the daemon answers every waiting request as it stops
        self.state.operators.close()
        self.state.reader.close()


def start(daemon, host: str, port: int) -> Kiosk:
    """Serve the kiosk for ``daemon`` on HOST:PORT (port 0: a free one); plain HTTP."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        family = socket.AF_INET
    sock = socket.socket(family)
    if port:
        # A fixed port is taken again at once after a restart. Not for port 0: the kernel may then hand out a
        # port another such socket holds bound but not yet listening, and listen() would fail.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # A response's head and body go out at once, not 40 ms apart (as the archive's console found).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
        sock.listen(socket.SOMAXCONN)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"kiosk not served: it cannot listen on {host}:{port} ({exc.strerror}); set kiosk_port "
                          "in station.toml to a free port (or kiosk = false) and restart the service") from None
    try:
        if not ipaddress.ip_address(host).is_loopback:
            log.warning("the kiosk listens on %s, beyond this machine, over plain HTTP: use it on a trusted "
                        "scanning-room network only", host)
    except ValueError:
        pass
    loop = asyncio.new_event_loop()
    hub = Hub(loop)
    state = KioskState(daemon, view.Reader(daemon.config), hub, Operators(daemon.config.home))
    app = create_app(state)
    config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False, server_header=False,
                            timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    bound = sock.getsockname()[1]

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(server.serve(sockets=[sock]))
        finally:
            loop.close()
            sock.close()

    thread = threading.Thread(target=serve, name="quire-kiosk", daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        time.sleep(0.01)
    if not server.started:
        state.operators.close()
        state.reader.close()
        raise ConfigError(f"kiosk not served: it stopped before it listened on {host}:{bound} (see the log above); "
                          "restart the service")
    daemon.listeners.append(hub.publish)
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    return Kiosk(f"http://{shown}:{bound}/", server, thread, state)
