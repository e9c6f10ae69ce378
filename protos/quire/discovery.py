"""Zeroconf (mDNS/DNS-SD): the central archive and stations make themselves findable on the LAN."""

import socket
import threading
import time

from zeroconf import InterfaceChoice, ServiceBrowser, ServiceInfo, ServiceStateChange, Zeroconf

CENTRAL_TYPE = "_quire._tcp.local."
STATION_TYPE = "_quire-station._tcp.local."
TXT_VERSION = "1"


def open_zeroconf(interfaces: list | str = "all") -> Zeroconf:
    """A Zeroconf bound to ``interfaces`` ("all", or addresses such as ["127.0.0.1"] in tests)."""
    if interfaces == "all":
        return Zeroconf(interfaces=InterfaceChoice.All)
    return Zeroconf(interfaces=list(interfaces))


def service_info(service_type: str, name: str, host: str, port: int, properties: dict) -> ServiceInfo:
    """The DNS-SD records of one instance, with the TXT version added."""
    addresses = [socket.inet_aton(host)] if _is_ipv4(host) else []
    return ServiceInfo(service_type, f"{name}.{service_type}", port=port, addresses=addresses or None,
                       parsed_addresses=None if addresses else ["127.0.0.1"],
                       properties={"v": TXT_VERSION, **properties}, server=f"{name}.local.")


def advertise(zc: Zeroconf, service_type: str, name: str, host: str, port: int, properties: dict) -> ServiceInfo:
    """Register one service instance; the caller unregisters it on shutdown."""
    info = service_info(service_type, name, host, port, properties)
    zc.register_service(info, allow_name_change=True)
    return info


def browse(zc: Zeroconf, service_type: str, timeout_s: float = 5.0, want=lambda props: True) -> list[dict]:
    """Instances of ``service_type`` found within ``timeout_s``: dicts of address, port, properties."""
    found: list[dict] = []
    done = threading.Event()

    def on_change(zeroconf, service_type, name, state_change):
        if state_change is not ServiceStateChange.Added:
            return
        info = zeroconf.get_service_info(service_type, name, timeout=2000)
        if info is None:
            return
        props = {k.decode(): (v or b"").decode() for k, v in info.properties.items()}
        if props.get("v") != TXT_VERSION or not want(props):
            return
        for address in info.parsed_addresses():
            found.append({"name": name, "address": address, "port": info.port, "properties": props})
        done.set()

    browser = ServiceBrowser(zc, service_type, handlers=[on_change])
    try:
        deadline = time.monotonic() + timeout_s
        while not done.wait(0.1) and time.monotonic() < deadline:
            pass
        time.sleep(0.2)  # let near-simultaneous answers arrive too
    finally:
        browser.cancel()
    return found


def _is_ipv4(host: str) -> bool:
    try:
        socket.inet_aton(host)
        return host.count(".") == 3
    except OSError:
        return False
