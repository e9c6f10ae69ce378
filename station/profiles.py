"""Scanner hardware profiles: which SANE option values mean Quire's feeds, modes, buttons and
hardware features on each scanner family, chosen from the device's vendor and model.

Profiles are data (``hardware/profiles/*.toml``); a site adds or overrides one with
``profiles_dir`` in station.toml. A family's backend names its options freely ("ADF Duplex",
"Automatic Document Feeder(left aligned,Duplex)", "adf" plus a duplex switch …); each Quire
notion lists candidates best first, and the first one the device offers is used.
"""

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from quire.settings import Regex, Settings, Texts, listed, read_toml, validated

from .errors import ConfigError

FORMAT = "quire-scanner-profile/1"
# hardware/profiles ships as the package quire_hardware.profiles; installed, it is a directory on disk.
SHIPPED_DIR = Path(str(resources.files("quire_hardware.profiles")))
FEEDS = ("duplex", "front", "flatbed")
# Switched on unless a site says otherwise: a double feed hides a page, and Quire must never lose one.
DEFAULT_FEATURES = ("double_feed",)
OptionValue = bool | int | float | str


class Match(Settings):
    """Which devices a family claims: sane_get_devices() vendor strings (compared case-blind) and
    patterns searched in the model string; neither for the generic profile."""

    vendors: Texts = ()
    models: listed(Regex) = ()  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _both_or_neither(self) -> "Match":
        if bool(self.vendors) != bool(self.models):
            raise ValueError("[match] needs both vendors and models (or neither, for the generic profile)")
        return self


class Sources(Settings):
    """Candidate 'source' values for each Quire feed, best first; or one source and a duplex switch."""

    duplex: Texts = ()
    front: Texts = ()
    flatbed: Texts = ()
    duplex_switch: str | None = None


class Modes(Settings):
    """Candidate 'mode' values for each Quire mode, best first."""

    colour: Texts = ()
    grey: Texts = ()
    bilevel: Texts = ()


class ProfileFile(Settings):
    """What a scanner profile file may say."""

    format: Literal["quire-scanner-profile/1"]
    name: str = Field(min_length=1)
    family: str = Field(min_length=1)
    backends: Texts = ()
    # USB vendor ids the udev rule must cover
    usb_vendors: listed(Annotated[str, Field(pattern="^[0-9a-f]{4}$")]) = ()  # type: ignore[valid-type]
    notes: str | None = None
    match: Match = Match()
    sources: Sources = Sources()
    modes: Modes = Modes()
    buttons: dict[str, Texts] = {}                 # button → candidate sensor option names
    sensors: dict[str, Texts] = {}                 # sensor → candidate option names
    hardware: dict[str, dict[str, OptionValue]] = {}   # feature → {option: value}
    setup: dict[str, OptionValue] = {}             # option → value, set on every open


class Profile(ProfileFile):
    """A scanner profile and the file it came from."""

    path: str

    @property
    def generic(self) -> bool:
        return not self.match.vendors

    def matches(self, vendor: str, model: str) -> bool:
        """Whether a device reporting this vendor and model belongs to this profile's family."""
        if self.generic:
            return False
        if vendor.strip().casefold() not in {v.casefold() for v in self.match.vendors}:
            return False
        return any(re.search(p, model.strip(), re.IGNORECASE) for p in self.match.models)


@dataclass
class Plan:
    """The SANE option values a profile chooses for one device."""

    options: dict                      # option name → value, in the order to set them
    feed: str | None                   # the Quire feed obtained: duplex, front, flatbed or None
    mode: str | None                   # the SANE mode value chosen
    scan_button: str | None            # the sensor option that is the Scan button, if any
    features: list[str]                # hardware features switched on


def load(extra_dir: str | Path | None = None) -> list[Profile]:
    """Every profile: those shipped in hardware/profiles, then a site's, which replace by name."""
    if not SHIPPED_DIR.is_dir():
        raise ConfigError(f"scanner profiles not found at {SHIPPED_DIR}; reinstall Quire")
    by_name: dict[str, Profile] = {}
    dirs = [SHIPPED_DIR] + ([Path(extra_dir)] if extra_dir else [])
    for folder in dirs:
        if not folder.is_dir():
            raise ConfigError(f"profiles_dir {folder} is not a directory; fix station.toml")
        for path in sorted(folder.glob("*.toml")):
            profile = parse(path)
            by_name[profile.name] = profile
    if not any(p.generic for p in by_name.values()):
        raise ConfigError(f"no generic scanner profile in {SHIPPED_DIR}; reinstall Quire")
    return list(by_name.values())


def parse(path: Path) -> Profile:
    """Read and check one profile file; a ConfigError names the file and every problem."""
    found = validated(ProfileFile, read_toml(path, ConfigError), f"scanner profile {path}", ConfigError)
    return Profile(**dict(found), path=str(path))


def select(vendor: str, model: str, profiles: list[Profile]) -> Profile:
    """The profile for a device's vendor and model; the generic one when no family claims it."""
    for profile in profiles:
        if profile.matches(vendor, model):
            return profile
    return next(p for p in profiles if p.generic)


def find_device(devices: list[tuple], wanted: str, profiles: list[Profile]) -> tuple[tuple, Profile] | None:
    """The ``sane.get_devices()`` entry to use and its profile.

    ``wanted`` is a SANE device name, or ``auto``: the first device a family profile claims, else
    the first device at all. None when nothing suitable is attached.
    """
    if wanted != "auto":
        for dev in devices:
            if dev[0] == wanted:
                return dev, select(dev[1], dev[2], profiles)
        return None
    claimed = [(dev, select(dev[1], dev[2], profiles)) for dev in devices]
    for dev, profile in claimed:
        if not profile.generic:
            return dev, profile
    return claimed[0] if claimed else None


def plan(profile: Profile, offered: dict, readable: frozenset = frozenset(), feed: str = "duplex",
         mode: str = "colour", features: tuple[str, ...] = DEFAULT_FEATURES) -> Plan:
    """Choose option values for a device from what it offers.

    ``offered`` maps each option software may set (hyphenated names, as backends give them) to its
    list of allowed values, or None when it is not a list (booleans, numbers); ``readable`` names
    the read-only options too, where buttons and sensors are. The feed falls back
    duplex → front → flatbed to what the device has.
    """
    options: dict = {}
    order = FEEDS[FEEDS.index(feed):] if feed in FEEDS else FEEDS
    got_feed = None
    if "source" in offered:
        for candidate_feed in order:
            value = _first_offered(getattr(profile.sources, candidate_feed), offered["source"])
            if value is not None:
                options["source"], got_feed = value, candidate_feed
                break
    switch = profile.sources.duplex_switch
    # A backend with a fixed source (not offered) feeds from it; the switch decides duplex.
    if switch and switch in offered and got_feed in ("front", None):
        # Backends such as Panasonic's feed from one 'adf' source and turn duplex on with a switch.
        options[switch] = feed == "duplex"
        got_feed = "duplex" if feed == "duplex" else "front"
    got_mode = None
    if "mode" in offered:
        got_mode = _first_offered(getattr(profile.modes, mode, ()), offered["mode"])
        if got_mode is not None:
            options["mode"] = got_mode
    enabled = []
    for feature in features:
        settings = profile.hardware.get(feature, {})
        usable = {name: value for name, value in settings.items() if name in offered}
        if usable and all(_allowed(value, offered[name]) for name, value in usable.items()):
            options.update(usable)
            enabled.append(feature)
    scan_button = next((name for name in profile.buttons.get("scan", []) if name in readable or name in offered),
                       None)
    return Plan(options, got_feed, got_mode, scan_button, enabled)


def _first_offered(candidates: tuple[str, ...], offered: list | None) -> str | None:
    if not offered:
        return None
    for candidate in candidates:
        if candidate in offered:
            return candidate
    folded = {str(v).casefold(): v for v in offered}
    for candidate in candidates:
        if candidate.casefold() in folded:
            return folded[candidate.casefold()]
    return None


def _allowed(value, offered: list | None) -> bool:
    return offered is None or value in offered
