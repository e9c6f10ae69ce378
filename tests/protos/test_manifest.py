"""The signed-manifest contract: canonical bytes, versions, every problem reported."""

import nacl.signing
import pytest

from quire import manifest, receipt
from quire.canonical import canonical_bytes
from quire.errors import BadSignature, Malformed, UnknownFormat


def sample(pages=2):
    return {
        "station_id": "st-1",
        "created_at": "2026-11-21T00:00:00.000Z",
        "batch": {"id": "b1", "operator": "op", "source": "synthetic",
                  "started_at": "2026-11-21T00:00:00.000Z", "ended_at": "2026-11-21T00:01:00.000Z"},
        "dossier": {"archive_no": "D-1", "name": "张三"},
        "material": {"item": "4-1-2", "title": "学位证书", "page_count": pages},
        "pages": [{"n": i, "sha256": f"{i:064x}", "bytes": 10, "media_type": "image/jpeg",
                   "width_px": 100, "height_px": 100, "dpi": 300, "colour": "grey", "record": {}}
                  for i in range(1, pages + 1)],
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
