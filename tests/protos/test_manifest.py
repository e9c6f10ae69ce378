"""The signed-manifest contract: canonical bytes, versions, every problem reported."""

import nacl.signing
import pytest

from quire import manifest, receipt
from quire.canonical import canonical_bytes
from quire.errors import BadSignature, Malformed, UnknownFormat


def record(**changes):
    """A page record as a station writes it (quire.bundle/2); keywords change fields."""
    return {"dpi": 300, "dpi_source": "scanner", "colour": "grey", "colour_reason": "no colour content; policy auto → grey",
            "colour_evidence": {"found_percent": {}, "grey_source": False, "policy": "auto"},
            "blank": False, "skew_deg": 0.4, "rotation_deg": -0.4, **changes}


def sample(pages=2):
    return {
        "station_id": "st-1",
        "station_host": "pi",
        "created_at": "2026-11-21T00:00:00.000Z",
        "batch": {"id": "b1", "operator": "op", "source": "synthetic",
                  "started_at": "2026-11-21T00:00:00.000Z", "ended_at": "2026-11-21T00:01:00.000Z"},
        "dossier": {"archive_no": "D-1", "name": "张三"},
        "material": {"item": "4-1-2", "title": "学位证书", "page_count": pages},
        "pages": [{"n": i, "sha256": f"{i:064x}", "bytes": 10, "media_type": "image/jpeg", "width_px": 100,
                   "height_px": 100, "dpi": 300, "colour": "grey", "captured_at": "2026-11-21T00:00:30.000Z",
                   "record": record()} for i in range(1, pages + 1)],
    }


def test_sealed_manifest_reads_back_and_verifies():
    key = nacl.signing.SigningKey.generate()
    signed = manifest.seal(sample(), key)
    assert manifest.read(signed.data)["dossier"]["name"] == "张三"
    manifest.verify(signed.data, signed.signature, bytes(key.verify_key))
    assert signed.data == canonical_bytes(signed.manifest)


def test_signature_is_bound_to_the_key_and_the_bytes():
    key, other = nacl.signing.SigningKey.generate(), nacl.signing.SigningKey.generate()
    signed = manifest.seal(sample(), key)
    with pytest.raises(BadSignature):
        manifest.verify(signed.data, signed.signature, bytes(other.verify_key))
    with pytest.raises(BadSignature):
        manifest.verify(signed.data.replace(b"D-1", b"D-2"), signed.signature, bytes(key.verify_key))


def test_a_bundle_signature_is_not_a_valid_receipt_signature():
    key = nacl.signing.SigningKey.generate()
    signed = manifest.seal(sample(), key)
    with pytest.raises(BadSignature):  # domain separation
        receipt.verify(signed.data, signed.signature, bytes(key.verify_key), signed.bundle_id)


def test_unknown_version_is_refused_by_name():
    data = canonical_bytes(dict(sample(), format="quire.bundle/99"))
    with pytest.raises(UnknownFormat, match="quire.bundle/99"):
        manifest.read(data)


def test_non_canonical_bytes_are_refused():
    data = canonical_bytes(dict(sample(), format=manifest.FORMAT))
    with pytest.raises(Malformed, match="canonical"):
        manifest.read(data.replace(b",", b", ", 1))


def test_every_problem_is_reported_not_just_the_first():
    bad = sample()
    bad["material"]["item"] = "11-1"
    bad["pages"][0]["sha256"] = "nothex"
    bad["pages"][1]["n"] = 5
    bad["pages"][1]["colour"] = "sepia"
    with pytest.raises(Malformed) as info:
        manifest.seal(bad, nacl.signing.SigningKey.generate())
    text = "; ".join(info.value.problems)
    for expected in ("category 11", "sha256", "expected 2", "sepia"):
        assert expected in text
    assert len(info.value.problems) == 4


def test_the_page_record_is_typed_and_every_error_named_with_its_place():
    bad = sample()
    bad["pages"][0]["record"] = record(dpi=True, dpi_source="guessed", skew_deg="0.4", extra="?")
    bad["pages"][1]["record"] = record(colour_evidence={"found_percent": {"seal": 1.2}, "grey_source": "no",
                                                        "policy": "auto"})
    bad["pages"][1]["bytes"] = -1
    bad["dossier"]["archive_no"] = ""
    with pytest.raises(Malformed) as info:
        manifest.seal(bad, nacl.signing.SigningKey.generate())
    problems = info.value.problems
    for place, says in [("pages[0].record.dpi:", "a whole number (got true)"),
                        ("pages[0].record.dpi_source:", "'guessed'"),
                        ("pages[0].record.skew_deg:", "a number (got the string '0.4')"),
                        ("pages[0].record.extra:", "unknown"),
                        ("pages[1].record.colour_evidence.found_percent.seal:", "'red'"),
                        ("pages[1].record.colour_evidence.grey_source:", "true or false"),
                        ("pages[1].bytes:", "at least 1"),
                        ("dossier.archive_no:", "at least this many characters: 1")]:
        assert any(p.startswith(place) and says in p for p in problems), (place, problems)
    assert len(problems) == 8


def test_a_version_1_manifest_is_still_read_with_its_record_as_it_came():
    old = dict(sample(), format=manifest.FORMAT_1)
    old["pages"][0]["record"] = {"colour_reason": "red content (seal/heading) 1.20% of page; policy auto → colour"}
    assert manifest.read(canonical_bytes(old))["format"] == "quire.bundle/1"
    # The envelope around the record is as strict as /2's.
    old["pages"][1]["sha256"] = "ABC"
    with pytest.raises(Malformed, match=r"pages\[1\].sha256: must be a SHA-256"):
        manifest.read(canonical_bytes(old))
    # A /2 manifest without the typed record is refused.
    with pytest.raises(Malformed, match="record.dpi_source: missing"):
        manifest.read(canonical_bytes(dict(old, format=manifest.FORMAT)))


def test_receipts_and_checkpoints_are_strict_too():
    key = nacl.signing.SigningKey.generate()
    with pytest.raises(Malformed) as info:
        receipt.issue({"bundle_id": "b" * 63, "station_id": "st-1", "pages": "1", "bytes": -1, "received_at": "t",
                       "central_key": "k", "audit": {"entry": 0, "checkpoint": {}},
                       "standards": {"profile": "gbt33870", "version": 1, "warnings": [], "colour": "lax"}}, key)
    problems = "; ".join(info.value.problems)
    for expected in ("receipt.bundle_id: must be a SHA-256", "receipt.pages: must be a whole number",
                     "receipt.bytes: must be at least 0", "receipt.standards.colour: unknown"):
        assert expected in problems
    assert len(info.value.problems) == 4
