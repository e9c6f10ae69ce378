"""quire-central serve: the archive service over gRPC, with its web console and zeroconf announcement
(imported by the CLI only for this command)."""

import signal
import socket
import sys
import threading
from pathlib import Path

from quire import discovery, keys

from . import replica, web
from .archive import open_archive
from .errors import CentralError
from .server import build_server


def cmd_serve(cfg, args) -> int:
    if args.web and replica.is_replica(cfg):
        raise CentralError("this home is an off-site copy: it serves only its primary's pushes, no web console "
                           "(readers use the primary; promote the copy first if the primary is lost)")
    archive = open_archive(cfg)
    server, port = build_server(archive, cfg.listen, tls=not cfg.insecure)
    console = None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    host = cfg.listen.rsplit(":", 1)[0]
    print(f"listening on {host}:{port}", flush=True)
    print(f"key fingerprint {keys.fingerprint(archive.public_key)}", flush=True)
    if cfg.insecure:
        print("WARNING: plain-text gRPC (--insecure): for a lab only", file=sys.stderr, flush=True)
    if args.web:
        try:
            console = web.start(archive, args.web, http=args.web_http, cert=args.web_cert and Path(args.web_cert),
                                key=args.web_key and Path(args.web_key))
        except CentralError:
            server.stop(grace=None).wait()
            archive.close()
            raise
        print(f"web on {console.url}", flush=True)
    zc = _advertise(archive, host, port) if cfg.advertise and not stop.is_set() else None
    stop.wait()
    if zc:
        zc.unregister_all_services()
        zc.close()
    if console:
        console.stop()
    # Let calls in flight finish (bounded), so no upload is cut mid-chunk by a clean stop.
    server.stop(grace=10).wait()
    archive.close()
    return 0


def _advertise(archive, host: str, port: int):
    # Listening everywhere: announce the addresses of the interfaces mDNS goes out on.
    interfaces = archive.config.zeroconf_interfaces if host in ("0.0.0.0", "::", "") else [host]
    try:
        announce = discovery.announced_addresses(interfaces)
    except ValueError as exc:
        raise CentralError(f"not announced on zeroconf: {exc} (or serve with --no-advertise)") from None
    zc = discovery.open_zeroconf(archive.config.zeroconf_interfaces)
    discovery.advertise(zc, discovery.CENTRAL_TYPE, f"quire-central-{socket.gethostname()}", announce, port, {
        "fp": keys.fingerprint(archive.public_key),
        "tls": archive.tls.cert_sha256.hex(),
        "insecure": "1" if archive.config.insecure else "0",
    })
    return zc
