"""Finding the central archive by zeroconf when no address is configured or it moved; announcing the station."""

import hashlib
import logging
import ssl

import zeroconf

from quire import discovery, keys

from .errors import CentralKeyMismatch, CentralUnreachable
from .transport import answers, fetch_certificate

log = logging.getLogger("quire.station.discovery")

RELOCATE_BROWSE_S = 2.0   # how long to look for a moved archive
ANSWER_S = 2.0            # how long a connection to a live archive may take to open


def find_central(config, timeout_s: float = 10.0, fingerprint: str | None = None) -> str:
    """HOST:PORT of the central archive advertised on the network.

    With ``fingerprint`` only that archive is accepted; without it, exactly one must answer. The search ends as
    soon as one answers; the timeout is only how long to keep asking before saying none did.
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
    return _host_port(found[0])


def relocated(station, address: str) -> str:
    """``address``, or, when nothing answers there, where zeroconf finds the archive this station is pinned
    to: its key fingerprint in TXT and the pinned TLS certificate presented (the key is checked again on
    the call). An announcement of the pinned key with another certificate is refused loudly."""
    pinned = station.store.get_meta("central_key")
    if not pinned or answers(address, ANSWER_S):
        return address
    fingerprint = keys.fingerprint(bytes.fromhex(pinned))
    try:
        zc = discovery.open_zeroconf(station.config.zeroconf_interfaces)
        try:
            found = discovery.browse(zc, discovery.CENTRAL_TYPE, RELOCATE_BROWSE_S,
                                     lambda props: props.get("fp") == fingerprint)
        finally:
            zc.close()
    except (OSError, zeroconf.Error) as exc:
        log.warning("central archive at %s does not answer and zeroconf cannot look for it (%s)", address, exc)
        return address
    impostors = []
    for candidate in dict.fromkeys(_host_port(f) for f in found if _host_port(f) != address):
        if station.config.insecure:
            if not answers(candidate, ANSWER_S):
                continue
        else:
            try:
                presented = fetch_certificate(candidate, timeout_s=ANSWER_S)
            except CentralUnreachable:
                continue
            if presented != ssl.PEM_cert_to_DER_cert(station.store.get_meta("central_cert")):
                impostors.append(f"{candidate} (TLS certificate SHA256:{hashlib.sha256(presented).hexdigest()})")
                continue
        log.warning("central archive %s moved from %s to %s (found by zeroconf); syncing there", fingerprint,
                    address, candidate)
        station.store.set_meta("central_address", candidate)
        return candidate
    if impostors:
        raise CentralKeyMismatch(
            f"central archive at {address} does not answer, and zeroconf announces key {fingerprint} at "
            f"{', '.join(impostors)}, which is not the certificate pinned at enrolment; nothing was sent. "
            "Something on this network claims to be the archive: tell the archive operator")
    return address


def _host_port(found: dict) -> str:
    host = found["address"]
    return f"[{host}]:{found['port']}" if ":" in host else f"{host}:{found['port']}"


# The announcement's TXT record is small and fixed (each string holds 255 bytes): no free text.
STATION_STATES = ("idle", "ready", "scanning", "no-scanner", "stopping")


class StationAnnouncement:
    """This station on zeroconf (id, state word, outbox length, key fingerprint), so technicians and the
    archive see it; the status line with its details stays in ``systemctl status`` and ``quire-station status``."""

    def __init__(self, config, station_id: str, fingerprint: str, state: str, outbox: int):
        addresses = discovery.announced_addresses(config.zeroconf_interfaces)
        self._zc = discovery.open_zeroconf(config.zeroconf_interfaces)
        try:
            # DNS-SD needs a port; the station serves none over the network, so it announces the discard port.
            self._args = (discovery.STATION_TYPE, station_id, addresses, 9)
            self._id, self._fingerprint = station_id, fingerprint
            discovery.advertise(self._zc, *self._args, self._props(state, outbox))
        except BaseException:
            self._zc.close()  # the daemon tries again later: no zeroconf threads left behind each time
            raise

    def _props(self, state: str, outbox: int) -> dict:
        if state not in STATION_STATES:
            raise ValueError(f"station state {state!r} is not one of {', '.join(STATION_STATES)}")
        return {"id": self._id, "state": state, "outbox": str(outbox), "fp": self._fingerprint}

    def update(self, state: str, outbox: int) -> None:
        """Announce a new state or outbox length."""
        self._zc.update_service(discovery.service_info(*self._args, self._props(state, outbox)))

    def close(self) -> None:
        self._zc.unregister_all_services()
        self._zc.close()
