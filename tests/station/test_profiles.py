"""Scanner profiles: the right family for each device SANE lists, and the options each family needs."""

import pytest

from station import profiles
from station.errors import ConfigError

# sane.get_devices() tuples as the families' backends report them: (name, vendor, model, type).
FAMILY_DEVICES = [
    (("fujitsu:fi-7160:12345", "FUJITSU", "fi-7160", "scanner"), "fujitsu-fi"),
    (("fujitsu:fi-7460:40021", "FUJITSU", "fi-7460", "scanner"), "fujitsu-fi"),
    (("fujitsu:libusb:001:004", "RICOH", "fi-8170", "scanner"), "fujitsu-fi"),
    (("kodak:libusb:001:005", "KODAK", "i1860", "scanner"), "kodak"),
    (("kds_s2000w_net:s2060w", "Kodak Alaris", "S2060w", "sheetfed scanner"), "kodak"),
    (("canon_dr:libusb:001:006", "CANON", "DR-C225", "scanner"), "canon-dr"),
    (("canon_dr:libusb:001:007", "CANON", "P-215", "scanner"), "canon-dr"),
    (("epsonds:libusb:001:008", "Epson", "DS-530", "ESC/I-2"), "epson-ds"),
    (("epsonscan2:EPSON DS-870::esci2:usb:ES0193:294", "EPSON", "DS-870", "ADF scanner"), "epson-ds"),
    (("brother5:bus1;dev3", "Brother", "ADS-2700W", "USB scanner"), "brother-ads"),
    (("kvs1025:libusb:001:009", "Panasonic", "KV-S1025C", "sheetfed scanner"), "panasonic-kv"),
    (("kvs20xx:libusb:001:010", "MATSHITA", "KV-S2046C", "sheetfed scanner"), "panasonic-kv"),
    (("test:0", "Noname", "frontend-tester", "virtual device"), "sane-test"),
]
# Same vendors, other product lines: printers, flatbeds, all-in-ones get the generic profile.
OTHER_DEVICES = [
    ("hpaio:/usb/OfficeJet_Pro_9010?serial=CN0", "Hewlett-Packard", "OfficeJet_Pro_9010", "all-in-one"),
    ("epson2:libusb:001:011", "Epson", "Perfection V600", "flatbed scanner"),
    ("pixma:04A9176D", "CANON", "Canon PIXMA MG2500", "multi-function peripheral"),
    ("brother4:net1;dev0", "Brother", "MFC-L2710DW", "USB scanner"),
    ("kodakaio:net:192.168.1.9", "KODAK", "ESP 5", "multi-function peripheral"),
]


@pytest.fixture(scope="module")
def shipped():
    return profiles.load()


@pytest.mark.parametrize("device,expected", FAMILY_DEVICES, ids=[d[0][2] for d in FAMILY_DEVICES])
def test_each_family_is_recognised_from_vendor_and_model(shipped, device, expected):
    _, vendor, model, _ = device
    assert profiles.select(vendor, model, shipped).name == expected
    claimed = [p.name for p in shipped if p.matches(vendor, model)]
    assert claimed == [expected], "exactly one family profile may claim a device"


@pytest.mark.parametrize("device", OTHER_DEVICES, ids=[d[2] for d in OTHER_DEVICES])
def test_other_devices_of_the_same_vendors_get_the_generic_profile(shipped, device):
    assert profiles.select(device[1], device[2], shipped).generic


def test_auto_takes_the_first_recognised_scanner_over_an_all_in_one(shipped):
    devices = [OTHER_DEVICES[0], FAMILY_DEVICES[0][0], FAMILY_DEVICES[5][0]]
    device, profile = profiles.find_device(devices, "auto", shipped)
    assert device[2] == "fi-7160" and profile.name == "fujitsu-fi"
    device, profile = profiles.find_device([OTHER_DEVICES[0]], "auto", shipped)
    assert device[0].startswith("hpaio") and profile.generic
    assert profiles.find_device([], "auto", shipped) is None


def test_a_named_device_must_be_attached(shipped):
    devices = [d for d, _ in FAMILY_DEVICES]
    device, profile = profiles.find_device(devices, "canon_dr:libusb:001:006", shipped)
    assert profile.name == "canon-dr"
    assert profiles.find_device(devices, "fujitsu:fi-6130:1", shipped) is None


def _profile(shipped, name):
    return next(p for p in shipped if p.name == name)


def test_fujitsu_scans_duplex_in_colour_stops_on_double_feeds_and_has_a_scan_button(shipped):
    offered = {"source": ["ADF Front", "ADF Back", "ADF Duplex"], "mode": ["Lineart", "Halftone", "Gray", "Color"],
               "df-action": ["Default", "Continue", "Stop"], "hwdeskewcrop": None, "compression": ["None", "JPEG"]}
    plan = profiles.plan(_profile(shipped, "fujitsu-fi"), offered, frozenset({"scan", "page-loaded", "email"}))
    assert plan.options == {"source": "ADF Duplex", "mode": "Color", "df-action": "Stop"}
    assert (plan.feed, plan.scan_button, plan.features) == ("duplex", "scan", ["double_feed"])


def test_fujitsu_single_sided_when_asked(shipped):
    offered = {"source": ["ADF Front", "ADF Back", "ADF Duplex"], "mode": ["Gray", "Color"]}
    plan = profiles.plan(_profile(shipped, "fujitsu-fi"), offered, feed="front", mode="grey")
    assert plan.options == {"source": "ADF Front", "mode": "Gray"} and plan.feed == "front"


def test_brother_sentences_are_mapped(shipped):
    offered = {"source": ["FlatBed", "Automatic Document Feeder(left aligned)",
                          "Automatic Document Feeder(left aligned,Duplex)",
                          "Automatic Document Feeder(centrally aligned)",
                          "Automatic Document Feeder(centrally aligned,Duplex)"],
               "mode": ["Black & White", "Gray[Error Diffusion]", "True Gray", "24bit Color[Fast]"]}
    plan = profiles.plan(_profile(shipped, "brother-ads"), offered)
    assert plan.options == {"source": "Automatic Document Feeder(left aligned,Duplex)", "mode": "24bit Color[Fast]"}
    assert plan.scan_button is None  # Brother's button goes through brscan-skey, not SANE


def test_panasonic_turns_duplex_on_with_its_switch(shipped):
    # kvs1025: the source is fixed to the feeder (not settable), duplex is a boolean.
    offered = {"mode": ["bw", "halftone", "gray", "color"], "duplex": None, "double-feed": None,
               "feeder-mode": ["single", "continuous"]}
    plan = profiles.plan(_profile(shipped, "panasonic-kv"), offered)
    assert plan.options == {"duplex": True, "mode": "color", "double-feed": True}
    assert plan.feed == "duplex"
    front = profiles.plan(_profile(shipped, "panasonic-kv"), {"source": ["adf", "fb"], "duplex": None}, feed="front")
    assert front.options == {"source": "adf", "duplex": False} and front.feed == "front"


def test_canon_dr_start_button_and_double_feed_detection(shipped):
    offered = {"source": ["ADF Front", "ADF Back", "ADF Duplex"], "mode": ["Lineart", "Halftone", "Gray", "Color"],
               "df-thickness": None, "df-length": None, "rollerdeskew": None}
    plan = profiles.plan(_profile(shipped, "canon-dr"), offered, frozenset({"start", "stop", "adf-loaded"}))
    assert plan.options["source"] == "ADF Duplex" and plan.options["mode"] == "Color"
    assert plan.options["df-thickness"] is True and plan.options["df-length"] is True
    assert "rollerdeskew" not in plan.options  # Quire measures and records skew itself unless asked
    assert plan.scan_button == "start"


@pytest.mark.parametrize("name", ["kodak", "epson-ds"])
def test_sane_named_families_scan_adf_duplex_in_colour(shipped, name):
    offered = {"source": ["Flatbed", "ADF Front", "ADF Duplex"], "mode": ["Lineart", "Gray", "Color"]}
    plan = profiles.plan(_profile(shipped, name), offered)
    assert plan.options == {"source": "ADF Duplex", "mode": "Color"}


def test_a_flatbed_only_device_falls_back_to_the_flatbed(shipped):
    plan = profiles.plan(_profile(shipped, "fujitsu-fi"), {"source": ["Flatbed"], "mode": ["Color"]})
    assert plan.feed == "flatbed" and plan.options["source"] == "Flatbed"


def test_a_feature_the_device_cannot_take_is_left_off(shipped):
    plan = profiles.plan(_profile(shipped, "fujitsu-fi"), {"df-action": ["Default", "Continue"]})
    assert "df-action" not in plan.options and plan.features == []


def test_the_test_device_uses_its_feeder_and_a_stand_in_button(shipped):
    offered = {"source": ["Flatbed", "Automatic Document Feeder"], "mode": ["Gray", "Color"],
               "bool-soft-select-soft-detect": None}
    plan = profiles.plan(_profile(shipped, "sane-test"), offered)
    assert plan.options == {"source": "Automatic Document Feeder", "mode": "Color"}
    assert (plan.feed, plan.scan_button) == ("front", "bool-soft-select-soft-detect")


def test_a_site_profile_replaces_the_shipped_one(tmp_path, shipped):
    text = _profile_text(shipped, "fujitsu-fi").replace('duplex = ["ADF Duplex"]', 'duplex = ["Duplex (site)"]')
    (tmp_path / "fujitsu-fi.toml").write_text(text)
    site = profiles.load(tmp_path)
    assert len(site) == len(shipped)
    plan = profiles.plan(_profile(site, "fujitsu-fi"), {"source": ["ADF Duplex", "Duplex (site)"]})
    assert plan.options["source"] == "Duplex (site)"


def _profile_text(shipped, name):
    from pathlib import Path

    return Path(_profile(shipped, name).path).read_text()


@pytest.mark.parametrize("change,complaint", [
    (("quire-scanner-profile/1", "quire-scanner-profile/9"), "format: must be one of 'quire-scanner-profile/1'"),
    (('name = "fujitsu-fi"', 'name = "fujitsu-fi"\ncolour_profile = 1'), "colour_profile: unknown setting"),
    (("grey = [", "sepia = ["), "modes.sepia: unknown setting; known here: bilevel, colour, grey"),
    (('models = ["^fi-\\\\d"]', 'models = ["^fi-("]'), r"match.models\[0\]: is not a regular expression"),
])
def test_a_broken_profile_is_refused_naming_the_file(tmp_path, shipped, change, complaint):
    text = _profile_text(shipped, "fujitsu-fi")
    assert change[0] in text
    (tmp_path / "broken.toml").write_text(text.replace(change[0], change[1], 1))
    with pytest.raises(ConfigError, match=complaint) as info:
        profiles.load(tmp_path)
    assert "broken.toml" in str(info.value)


def test_the_test_device_is_configured_through_libsane_by_its_profile():
    from station.capture.sane_source import SaneSource

    source = SaneSource("auto", dpi=50)
    try:
        assert source.name == "sane:test:0" and source.profile.name == "sane-test"
        assert source.dev.source == "Automatic Document Feeder" and source.dev.mode == "Color"
        assert source.plan.scan_button == "bool-soft-select-soft-detect" and not source.duplex
        source.dev.bool_soft_select_soft_detect = True
        assert source.sensor("bool-soft-select-soft-detect") == 1
        source.dev.bool_soft_select_soft_detect = False
        assert source.sensor("no-such-sensor") is None
    finally:
        source.close()


def test_configured_options_win_over_the_profile():
    from station.capture.sane_source import SaneSource

    source = SaneSource("auto", dpi=50, options={"source": "Flatbed"})
    try:
        assert source.dev.source == "Flatbed"
    finally:
        source.close()


def test_every_problem_of_a_site_profile_is_reported_through_the_cli(tmp_path, shipped):
    """A site's profile with several mistakes: `doctor` fails the scanner check with one message naming
    the file and each key, instead of the first mistake (or a string taken for a list) showing up later."""
    from tests.conftest import make_station, run_cli

    site = tmp_path / "site-profiles"
    site.mkdir()
    text = _profile_text(shipped, "fujitsu-fi")
    for old, new in (('backends = ["fujitsu"]', 'backends = "fujitsu"'), ('"04c5"', '"04C5X"'),
                     ('scan = ["scan"]', 'scan = "scan"'), ('[modes]', '[modes]\nsepia = ["Sepia"]')):
        assert old in text
        text = text.replace(old, new, 1)
    (site / "fujitsu-fi.toml").write_text(text)
    make_station(tmp_path / "st").close()
    (tmp_path / "st" / "station.toml").write_text(f'source = "sane:auto"\nprofiles_dir = "{site}"\n')
    proc = run_cli("quire-station", "--home", tmp_path / "st", "doctor", check=False)
    scanner = next(line for line in proc.stdout.splitlines() if line.startswith("FAIL scanner"))
    assert proc.returncode == 1 and f"scanner profile {site / 'fujitsu-fi.toml'}: " in scanner, proc.stdout
    for problem in ("backends: must be a list (got the string 'fujitsu')",
                    "usb_vendors[0]: must be text matching ^[0-9a-f]{4}$ (got the string '04C5X')",
                    "modes.sepia: unknown setting", "buttons.scan: must be a list (got the string 'scan')"):
        assert problem in scanner
