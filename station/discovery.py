"""Finding the central archive by zeroconf when no address is configured."""

from quire import discovery

from .errors import CentralUnreachable


def find_central(config, timeout_s: float = 5.0, pinned_fingerprint: str | None = None) -> str:
    """HOST:PORT of a central archive advertised on the network (the pinned one, if any)."""
    want = (lambda p: p.get("fp") == pinned_fingerprint) if pinned_fingerprint else (lambda p: True)
    zc = discovery.open_zeroconf(config.zeroconf_interfaces)
    try:
        found = discovery.browse(zc, discovery.CENTRAL_TYPE, timeout_s, want)
    finally:
        zc.close()
    if not found:
        raise CentralUnreachable(
            "no central archive answered on zeroconf (multicast may not pass this network); "
            "pass --central HOST:PORT or set 'central' in station.toml")
    first = found[0]
    host = first["address"]
    return f"[{host}]:{first['port']}" if ":" in host else f"{host}:{first['port']}"
