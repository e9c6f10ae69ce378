"""Finding the central archive by zeroconf when no address is configured."""

from quire import discovery

from .errors import CentralUnreachable


def find_central(config, timeout_s: float = 5.0, fingerprint: str | None = None) -> str:
    """HOST:PORT of the central archive advertised on the network.

    With ``fingerprint`` only that archive is accepted; without it, exactly one must answer.
    """
    want = (lambda p: p.get("fp") == fingerprint) if fingerprint else (lambda p: True)
    zc = discovery.open_zeroconf(config.zeroconf_interfaces)
    try:
        found = discovery.browse(zc, discovery.CENTRAL_TYPE, timeout_s, want)
    finally:
        zc.close()
    if not found:
        raise CentralUnreachable(
            "no central archive answered on zeroconf" + (f" with key {fingerprint}" if fingerprint else "")
            + " (multicast may not pass this network); pass --central HOST:PORT or set 'central' in station.toml")
    archives = {f["properties"].get("fp") for f in found}
    if len(archives) > 1:
        listing = ", ".join(sorted(f"{f['address']}:{f['port']} ({f['properties'].get('fp', '?')[:23]}…)"
                                   for f in found))
        raise CentralUnreachable(f"several central archives answered: {listing}; "
                                 "pass --fingerprint (from 'quire-central info') or --central HOST:PORT")
    first = found[0]
    host = first["address"]
    return f"[{host}]:{first['port']}" if ":" in host else f"{host}:{first['port']}"


class StationAnnouncement:
    """This station on zeroconf (id, state, outbox length), so technicians and the archive see it."""

    def __init__(self, config, station_id: str, state: str, outbox: int):
        import socket

        self._zc = discovery.open_zeroconf(config.zeroconf_interfaces)
        try:
            interfaces = config.zeroconf_interfaces
            address = interfaces[0] if interfaces != "all" else socket.gethostbyname(socket.gethostname())
            # DNS-SD needs a port; the station serves none over the network, so it announces the discard port.
            self._args = (discovery.STATION_TYPE, station_id, address, 9)
            self._id = station_id
            discovery.advertise(self._zc, *self._args, self._props(state, outbox))
        except BaseException:
            self._zc.close()  # the daemon tries again later: no zeroconf threads left behind each time
            raise

    def _props(self, state: str, outbox: int) -> dict:
        return {"id": self._id, "state": state, "outbox": str(outbox)}

    def update(self, state: str, outbox: int) -> None:
        """Announce a new state or outbox length."""
        self._zc.update_service(discovery.service_info(*self._args, self._props(state, outbox)))

    def close(self) -> None:
        self._zc.unregister_all_services()
        self._zc.close()
