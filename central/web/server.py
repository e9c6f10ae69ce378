"""Serving the console from the archive's own process: uvicorn on a thread of its own."""

import asyncio
import ipaddress
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from ..archive import Archive
from ..errors import ConfigError
from .app import create_app
from .imaging import font_path


@dataclass
class WebServer:
    """A running console: its address, and how to stop it."""

    url: str
    server: uvicorn.Server
    thread: threading.Thread
    app: object

    def stop(self) -> None:
        """Finish requests in flight, close the socket, end the worker threads."""
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.app.state.console.pool.shutdown(wait=True)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def start(archive: Archive, listen: str, *, http: bool = False, cert: Path | None = None,
          key: Path | None = None) -> WebServer:
    """Serve the console on ``listen`` (HOST:PORT, port 0 for a free one): HTTPS with ``cert``/``key``
    or the archive's own certificate; plain HTTP (``http``) only on a loopback address."""
    host, _, port_text = listen.rpartition(":")
    host = host.strip("[]")
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"--web {listen!r}: write HOST:PORT, e.g. 127.0.0.1:8443") from None
    if http and not is_loopback(host):
        raise ConfigError(f"--web-http serves plain HTTP, which only a loopback address may do (not {host}); "
                          "serve HTTPS there (the archive's certificate, or --web-cert/--web-key), or put a "
                          "TLS reverse proxy in front of 127.0.0.1")
    if (cert is None) != (key is None):
        raise ConfigError("give both --web-cert and --web-key, or neither (the archive's own certificate)")
    font_path()  # refuse to start without the watermark's font
    home_tls = archive.config.home / "tls"
    cert, key = (None, None) if http else (cert or home_tls / "cert.pem", key or home_tls / "key.pem")
    if cert is not None:
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"web certificate {cert} / key {key} cannot be used: {exc}") from None
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Connections inherit it: a response's head and body go out at once, not 40 ms apart (Nagle waiting on
    # the browser's delayed acknowledgement of the head).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"the web console cannot listen on {listen}: {exc.strerror}; pick another --web "
                          "address or stop what holds it") from None
    app = create_app(archive, secure=cert is not None, workers=archive.config.workers)
    config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False,
                            ssl_certfile=cert, ssl_keyfile=key, server_header=False, timeout_graceful_shutdown=10)
    server = uvicorn.Server(config)
    bound = sock.getsockname()[1]
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), name="quire-web-server",
                              daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        time.sleep(0.01)
    shown = f"[{host}]" if ":" in host else host
    return WebServer(f"{'https' if cert else 'http'}://{shown}:{bound}/", server, thread, app)
