"""Standards profiles as data, and the validator that reports every violation as a typed detail.

The page files here are made with Pillow to say exactly what each case needs; the validator
reads their headers back the way the central service does for a stored bundle.
"""

import io
from pathlib import Path

import pytest
from PIL import Image

from central import profile, standards
from central.profile import ProfileError
from quire import manifest as manifest_format
from quire.canonical import sha256_hex
from station.pipeline import ProcessedPage


@pytest.fixture(params=["disk", "scaled"])
def blob_kind(request):
    """Every test here runs on both kinds of storage: embedded (SQLite, disk) and scaled (PostgreSQL, S3)."""
    return request.param

GREY_REASON = "no colour content; policy auto → grey"
SEAL_REASON = "red content (seal/heading) 1.20% of page; policy auto → colour"
NOTHING_FOUND = {"found_percent": {}, "grey_source": False, "policy": "auto"}
SEAL_FOUND = {"found_percent": {"red": 1.2}, "grey_source": False, "policy": "auto"}


def page(dpi=300, colour="grey", media_type="image/jpeg", size=(120, 170), file_dpi=None, claimed_size=None,
         data=None, **record) -> ProcessedPage:
    """A small processed page as a station would store it; keywords override its processing record."""
    mode = standards.PIL_MODES[colour]
    out = io.BytesIO()
    fmt = standards.PIL_FORMATS[media_type]
    extra = {"compression": "group4"} if mode == "1" else {}
    Image.new(mode, size, "white").save(out, format=fmt, dpi=(file_dpi or dpi,) * 2, **extra)
    rec = {"skew_deg": 0.3, "rotation_deg": -0.3, "colour": colour, "blank": False,
           "colour_reason": GREY_REASON if colour != "colour" else SEAL_REASON,
           "colour_evidence": NOTHING_FOUND if colour != "colour" else SEAL_FOUND,
           "dpi": dpi, "dpi_source": "scanner"}
    rec.update(record)
    w, h = claimed_size or size
    suffix = ".jpg" if media_type == "image/jpeg" else ".tif"
    return ProcessedPage(data or out.getvalue(), media_type, suffix, w, h, dpi, colour, rec)


def bundle(tmp_path: Path, pages: list[ProcessedPage], archive_no="D-0001", item="1-1", operator="op",
           page_count=None, format=manifest_format.FORMAT, **dossier):
    """(manifest, open_blob) of a bundle whose page files are stored under ``tmp_path``."""
    store = tmp_path / "blobs"
    store.mkdir(exist_ok=True)
    listed = []
    for n, p in enumerate(pages, 1):
        sha = sha256_hex(p.data)
        (store / sha).write_bytes(p.data)
        listed.append({"n": n, "sha256": sha, "bytes": len(p.data), "media_type": p.media_type,
                       "width_px": p.width_px, "height_px": p.height_px, "dpi": p.dpi, "colour": p.colour,
                       "record": p.record})
    manifest = {
        "format": format, "station_id": "st-1", "created_at": "2026-11-21T00:00:00.000Z",
        "batch": {"id": "b1", "operator": operator, "source": "test", "started_at": "t", "ended_at": "t"},
        "dossier": {"archive_no": archive_no, **dossier},
        "material": {"item": item, "title": "干部履历表", "page_count": len(pages) if page_count is None else page_count},
        "pages": listed,
    }
    return manifest, lambda sha: open(store / sha, "rb")


GBT = profile.load("gbt33870")
DAT = profile.load("dat31")


def rules(findings) -> list[str]:
    return sorted(v.rule for v in findings.rejections)


# ---- profiles ----------------------------------------------------------------------------------

def test_shipped_profiles_load_with_their_numbers():
    assert (GBT.name, GBT.version, GBT.min_dpi, GBT.allowed_modes) == ("gbt33870", 3, 300, ("colour", "grey"))
    assert (DAT.min_dpi, DAT.allowed_modes) == (200, ("colour", "grey", "bilevel"))
    for p in (GBT, DAT):
        assert (p.skew_reject_above_deg, p.skew_warn_above_deg, p.effective_tolerance_percent) == (1.0, 0.5, 2.0)
        assert len(p.categories) == 16 and "4" not in p.categories and "9-4" in p.categories
        assert p.qc_rejection_reasons[:4] == ("倾斜", "裁切不当", "模糊", "缺页")  # what an inspector picks from
    assert set(profile.available()) == {"gbt33870", "dat31"}


def test_a_local_profile_extends_a_shipped_one(tmp_path):
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "county.toml").write_text(
        'format = "quire.profile/1"\nname = "county"\nversion = 3\ntitle = "县档案馆"\nextends = "dat31"\n'
        '[catalogue]\narchive_no_pattern = \'^[0-9]{4}-[0-9]{4}$\'\n')
    county = profile.load("county", tmp_path)
    assert (county.label, county.min_dpi, county.archive_no_pattern) == ("county v3", 200, "^[0-9]{4}-[0-9]{4}$")


def test_a_bad_profile_is_refused_with_every_problem(tmp_path):
    (tmp_path / "profiles").mkdir()
    path = tmp_path / "profiles" / "broken.toml"
    path.write_text('format = "quire.profile/1"\nname = "broken"\nversion = 0\ntitle = "x"\nextends = "gbt33870"\n'
                    '[resolution]\nmin_dpi = -5\nmax_dpi = 600\n[colour]\nallowed_modes = ["sepia"]\n'
                    '[catalogue]\ncategories = ["4"]\n')
    with pytest.raises(ProfileError) as info:
        profile.load("broken", tmp_path)
    assert str(info.value).startswith(f"{path}: ")
    for problem in ("version: must be at least 1 (got 0)", "resolution.min_dpi: must be at least 1 (got -5)",
                    "resolution.max_dpi: unknown setting; known here: effective_tolerance_percent, min_dpi, ",
                    "colour.allowed_modes[0]: must be one of 'bilevel', 'colour' or 'grey' (got the string 'sepia')",
                    "catalogue.categories[0]: must be one of '1', '2', "):
        assert problem in str(info.value)


def test_the_retired_page_count_setting_still_loads_but_cannot_be_turned_off(tmp_path):
    """page_count_equals_images could never fire (the bundle contract refuses a page count that differs
    from the pages first): a format /1 file that says true still loads, with the same content hash."""
    (tmp_path / "profiles").mkdir()
    text = 'format = "quire.profile/1"\nname = "{0}"\nversion = 1\ntitle = "x"\nextends = "gbt33870"\n[catalogue]\n'
    (tmp_path / "profiles" / "old.toml").write_text(text.format("old") + "page_count_equals_images = true\n")
    (tmp_path / "profiles" / "off.toml").write_text(text.format("off") + "page_count_equals_images = false\n")
    (tmp_path / "profiles" / "new.toml").write_text(text.format("new"))
    old, new = profile.load("old", tmp_path), profile.load("new", tmp_path)
    assert old.content.replace(b'"old"', b'"new"') == new.content
    with pytest.raises(ProfileError, match="catalogue.page_count_equals_images: cannot be turned off"):
        profile.load("off", tmp_path)


def test_an_unknown_profile_format_is_refused(tmp_path):
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "future.toml").write_text('format = "quire.profile/7"\nname = "future"\n')
    with pytest.raises(ProfileError, match="unknown profile format 'quire.profile/7'"):
        profile.load("future", tmp_path)
    with pytest.raises(ProfileError, match="no standards profile 'nope'"):
        profile.load("nope", tmp_path)


# ---- the validator, rule by rule -------------------------------------------------------------------

def test_clean_pages_pass(tmp_path):
    findings = standards.check(*bundle(tmp_path, [page(), page(colour="colour")]), GBT)
    assert findings.ok and findings.violations == []


def test_real_station_pages_at_300_dpi_pass_the_default_profile(tmp_path):
    from station.capture.synthetic import render_page
    from station.pipeline import process_page

    # One page with a red seal (colour) and one plain (grey), as the demo scans them.
    pages = [process_page(render_page(1, i).image, 300) for i in (0, 2)]
    assert {p.colour for p in pages} == {"colour", "grey"}
    findings = standards.check(*bundle(tmp_path, pages), profile.load(profile.DEFAULT_PROFILE))
    assert findings.ok, [str(v) for v in findings.violations]


CASES = {
    "BelowResolution": dict(pages=[page(dpi=150)]),
    "EffectiveResolution": dict(pages=[page(extent_mm=[12.0, 14.4])]),  # 120 px over 12 mm is 254 dpi
    "ColourRequired": dict(pages=[page(colour_evidence=SEAL_FOUND)]),
    "AssumedResolution": dict(pages=[page(dpi_source="assumed")]),
    "ColourModeNotAllowed": dict(pages=[page(colour="bilevel", media_type="image/tiff")]),
    "MixedFormats": dict(pages=[page(), page(media_type="image/tiff")]),
    "DpiNotInFile": dict(pages=[page(file_dpi=72)]),
    "HeaderMismatch": dict(pages=[page(claimed_size=(121, 170))]),
    "UnreadableImage": dict(pages=[page(data=b"not a picture at all")]),
    "ResidualSkew": dict(pages=[page(skew_deg=1.6, rotation_deg=0.0)]),
    "InvalidCategory": dict(pages=[page()], item="4-9"),
    "ArchiveNumberPattern": dict(pages=[page()], archive_no="D 0001"),
    "MissingMetadata": dict(pages=[page()], operator=" "),
}


@pytest.mark.parametrize("rule", sorted(CASES))
def test_each_rule_is_named_alone(tmp_path, rule):
    findings = standards.check(*bundle(tmp_path, **CASES[rule]), GBT)
    assert rules(findings) == [rule], [str(v) for v in findings.violations]
    assert rule in findings.reasons()[1]


def test_format_not_allowed_comes_from_the_profile(tmp_path):
    jpeg_only = GBT.model_copy(update={"allowed_media_types": ("image/jpeg",)})
    findings = standards.check(*bundle(tmp_path, [page(media_type="image/tiff")]), jpeg_only)
    assert rules(findings) == ["FormatNotAllowed"]


def test_a_bundle_breaking_several_rules_gets_all_of_them(tmp_path):
    pages = [page(dpi=150, file_dpi=96, colour_evidence=SEAL_FOUND, skew_deg=2.0, rotation_deg=0.0),
             page(colour="bilevel", media_type="image/tiff", claimed_size=(100, 100))]
    findings = standards.check(*bundle(tmp_path, pages, archive_no="档号 1", item="4-9", operator=""), GBT)
    assert rules(findings) == sorted([
        "BelowResolution", "DpiNotInFile", "ColourRequired", "ResidualSkew",       # page 1
        "ColourModeNotAllowed", "HeaderMismatch",                                  # page 2
        "MixedFormats", "ArchiveNumberPattern", "InvalidCategory", "MissingMetadata",
    ])
    by_rule = {v.rule: v for v in findings.rejections}
    assert by_rule["BelowResolution"] == standards.BelowResolution(page=1, dpi=150, minimum=300)
    assert by_rule["DpiNotInFile"] == standards.DpiNotInFile(page=1, in_file=96, stated=150)
    assert by_rule["HeaderMismatch"].page == 2 and by_rule["HeaderMismatch"].field == "pixel size"


def test_residual_skew_between_the_limits_is_a_warning_not_a_rejection(tmp_path):
    findings = standards.check(*bundle(tmp_path, [page(skew_deg=0.05, rotation_deg=0.0),
                                                  page(skew_deg=0.7, rotation_deg=0.0)]), GBT)
    assert findings.ok
    assert [str(w) for w in findings.warnings] == [
        "ResidualSkew page 2: 0.70° of skew left after processing, limit 0.5°"]
    assert findings.receipt_field() == {"profile": "gbt33870", "version": 3, "sha256": GBT.sha256, "warnings": [
        "ResidualSkew page 2: 0.70° of skew left after processing, limit 0.5°"]}


def test_grey_and_bilevel_follow_the_profiles_colour_policy(tmp_path):
    bilevel = bundle(tmp_path, [page(colour="bilevel", media_type="image/tiff",
                                     colour_reason="no colour content; clean black text; policy auto, "
                                                   "bilevel allowed → bilevel")])
    assert rules(standards.check(*bilevel, GBT)) == ["ColourModeNotAllowed"]
    assert standards.check(*bilevel, DAT).ok
    # The reason is for people: words in it that name colours decide nothing.
    assert standards.check(*bundle(tmp_path, [page(colour_reason="greyscale source; no red seal, no photo; "
                                                                 "policy auto → grey")]), GBT).ok


def test_colour_chosen_by_the_station_but_sent_grey_is_refused(tmp_path):
    sent_grey = page(colour="grey")
    sent_grey.record["colour"] = "colour"
    findings = standards.check(*bundle(tmp_path, [sent_grey]), GBT)
    assert rules(findings) == ["ColourRequired"]


def test_the_station_is_told_pages_grouped_and_within_bounds(tmp_path):
    findings = standards.check(*bundle(tmp_path, [page(dpi=150)] * 5 + [page()] + [page(dpi=150)]), GBT)
    assert findings.reasons() == [
        "standards profile gbt33870 v3 not met",
        "BelowResolution pages 1-5, 7: scanned at 150 dpi, the profile's minimum is 300 dpi",
    ]
    many = standards.check(*bundle(tmp_path, [page(skew_deg=1.01 + n / 100, rotation_deg=0.0) for n in range(400)]), GBT)
    message = "; ".join(many.reasons())
    assert len(message) < 4000 and message.endswith("'quire-central quarantine show' lists them all")
    assert len(many.rejections) == 400


# ---- decided from the typed page record (quire.bundle/2) --------------------------------------------

@pytest.mark.parametrize("reason", [
    SEAL_REASON,
    "red content (seal/heading) 1.20% of page; policy auto → grey",          # the same words as before
    "page carries a vermilion stamp; kept grey by operator",                 # reworded
    "发现红色印章（占页面 1.20%）；策略 自动 → 灰度",                             # translated
    "",
])
def test_colour_is_required_by_the_evidence_whatever_the_reason_says(tmp_path, reason):
    findings = standards.check(*bundle(tmp_path, [page(colour_reason=reason, colour_evidence=SEAL_FOUND)]), GBT)
    assert [str(v) for v in findings.rejections] == [
        "ColourRequired page 1: stored as grey, but the station found red on it, which needs colour"]
    # And a reason that names seals and red decides nothing when the evidence found no colour.
    assert standards.check(*bundle(tmp_path, [page(colour_reason=reason)]), GBT).ok


def test_colour_required_families_come_from_the_profile(tmp_path):
    blue = {"found_percent": {"blue": 0.4}, "grey_source": False, "policy": "auto"}
    red_only = GBT.model_copy(update={"colour_required_markers": ("red",)})
    assert rules(standards.check(*bundle(tmp_path, [page(colour_evidence=blue)]), GBT)) == ["ColourRequired"]
    assert standards.check(*bundle(tmp_path, [page(colour_evidence=blue)]), red_only).ok


def test_a_profile_naming_a_colour_the_station_does_not_measure_is_refused(tmp_path):
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "words.toml").write_text(
        'format = "quire.profile/1"\nname = "words"\nversion = 1\ntitle = "x"\nextends = "gbt33870"\n'
        '[colour]\ncolour_required_markers = ["red", "seal", "photo"]\n')
    with pytest.raises(ProfileError, match=r"colour.colour_required_markers\[1\]: must be one of 'red', "
                                           r"'orange/yellow', 'green', 'blue' or 'purple' \(got the string 'seal'\); "
                                           r"colour.colour_required_markers\[2\]: .*\(got the string 'photo'\)"):
        profile.load("words", tmp_path)


def test_an_assumed_resolution_is_refused_naming_the_page_and_what_to_do(tmp_path):
    pages = [page(), page(dpi_source="assumed"), page(dpi_source="file"), page(dpi_source="operator")]
    for shipped in (GBT, DAT):
        findings = standards.check(*bundle(tmp_path, pages), shipped)
        assert [str(v) for v in findings.rejections] == [
            "AssumedResolution page 2: 300 dpi was assumed, not measured (its image file states no resolution); "
            "rescan the page, or measure its resolution and import it again with --dpi "
            "(quire-station scan --rescan --dpi N)"]
    lenient = GBT.model_copy(update={"require_measured_dpi": False})
    assert standards.check(*bundle(tmp_path, pages), lenient).ok


def test_version_1_bundles_are_judged_leniently_and_told_so(tmp_path):
    # A /1 record has no dpi_source and no colour evidence: its prose is not read, and only a mode the
    # station itself chose colour for can be required to be colour.
    old = page(colour_reason=SEAL_REASON)
    for key in ("colour_evidence", "dpi_source"):
        del old.record[key]
    findings = standards.check(*bundle(tmp_path, [old], format=manifest_format.FORMAT_1), GBT)
    assert findings.ok
    assert [str(w) for w in findings.warnings] == [
        "LegacyRecord: a quire.bundle/1 bundle records neither where each page's resolution came from nor the "
        "colour evidence: colour was judged on the station's chosen mode only, and a measured resolution could "
        "not be required; update the station"]
    old.record["colour"] = "colour"
    assert rules(standards.check(*bundle(tmp_path, [old], format=manifest_format.FORMAT_1), GBT)) == ["ColourRequired"]
