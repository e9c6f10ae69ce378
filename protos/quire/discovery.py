"""Zeroconf (mDNS/DNS-SD): the central archive and stations make themselves findable on the LAN."""

import ipaddress
import threading
import time

import ifaddr
from zeroconf import InterfaceChoice, ServiceBrowser, ServiceInfo, ServiceStateChange, Zeroconf

CENTRAL_TYPE = "_quire._tcp.local."
STATION_TYPE = "_quire-station._tcp.local."
TXT_VERSION = "1"


def open_zeroconf(interfaces: list | str = "all") -> Zeroconf:
    """A Zeroconf bound to ``interfaces`` ("all", or addresses such as ["127.0.0.1"] in tests)."""
    if interfaces == "all":
        return Zeroconf(interfaces=InterfaceChoice.All)
    return Zeroconf(interfaces=list(interfaces))


def announced_addresses(interfaces: list | str = "all", adapters: list[ifaddr.Adapter] | None = None) -> list[str]:
    """The addresses to announce: those of the host's interfaces (``interfaces``: "all", or the
    addresses zeroconf is bound to), IPv4 and IPv6, link-local IPv6 with its scope id; loopback only
    when nothing else is configured, since a loopback address sends a station to itself."""
    adapters = ifaddr.get_adapters() if adapters is None else adapters
    chosen = []
    for adapter in adapters:
        for ip in adapter.ips:
            address = ipaddress.ip_address(ip.ip if isinstance(ip.ip, str) else ip.ip[0])
            if interfaces != "all" and str(address) not in interfaces:
                continue
            scoped = address.version == 6 and address.is_link_local and not isinstance(ip.ip, str) and ip.ip[2]
            chosen.append((address, f"{address}%{ip.ip[2]}" if scoped else str(address)))
    if not chosen:
        raise ValueError(f"none of the zeroconf interfaces {interfaces} is an address of this host's interfaces "
                         f"({', '.join(str(ip.ip) for a in adapters for ip in a.ips)}); correct zeroconf_interfaces")
    outside = [text for address, text in chosen if not address.is_loopback]
    return outside or [text for _, text in chosen]


def service_info(service_type: str, name: str, addresses: list[str], port: int, properties: dict) -> ServiceInfo:
    """The DNS-SD records of one instance at ``addresses``, with the TXT version added."""
    return ServiceInfo(service_type, f"{name}.{service_type}", port=port, addresses=addresses,
                       properties={"v": TXT_VERSION, **properties}, server=f"{name}.local.")


def advertise(zc: Zeroconf, service_type: str, name: str, addresses: list[str], port: int,
              properties: dict) -> ServiceInfo:
    """Register one service instance; the caller unregisters it on shutdown."""
    info = service_info(service_type, name, addresses, port, properties)
    zc.register_service(info, allow_name_change=True)
    return info


def browse(zc: Zeroconf, service_type: str, timeout_s: float = 5.0, want=lambda props: True) -> list[dict]:
    """Instances of ``service_type`` found within ``timeout_s``: dicts of address, port, properties.

    Each instance is resolved in its own thread, so instances that are slow to answer (or gone) do not hold
    back the one wanted: on a busy network, or a machine where many archives announce themselves, resolving
    them one after another could use up the whole timeout before the wanted one was asked.
    """
    found: list[dict] = []
    lock = threading.Lock()
    done = threading.Event()
    deadline = time.monotonic() + timeout_s

    def resolve(name):
        try:
            wait_ms = max(500, int((deadline - time.monotonic()) * 1000))
            info = zc.get_service_info(service_type, name, timeout=wait_ms)
        except Exception:  # noqa: BLE001 - zeroconf closed by the caller while this was still asking
            return
        if info is None:
            return
        props = {k.decode(): (v or b"").decode() for k, v in info.properties.items()}
        if props.get("v") != TXT_VERSION or not want(props):
            return
        with lock:
            found.extend({"name": name, "address": address, "port": info.port, "properties": props}
                         for address in info.parsed_scoped_addresses())
        done.set()

    def on_change(zeroconf, service_type, name, state_change):
        if state_change is ServiceStateChange.Added:
            threading.Thread(target=resolve, args=(name,), name="zeroconf-resolve", daemon=True).start()

    browser = ServiceBrowser(zc, service_type, handlers=[on_change])
    try:
        while not done.wait(0.1) and time.monotonic() < deadline:
            pass
        time.sleep(0.2)  # let near-simultaneous answers arrive too
    finally:
        browser.cancel()
    with lock:
        return list(found)
