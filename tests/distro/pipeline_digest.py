"""The same raw pages through process_page on two machines, compared: what tests/distro/arm64.sh reports.

    pipeline_digest.py render DIR          synthetic pages (every kind, skewed, turned, grey and colour) as DIR/*.npy
    pipeline_digest.py digest DIR > X.json each page processed here: SHA-256 of the encoded file, the record;
                                           the encoded files kept in DIR/<machine>/
    pipeline_digest.py compare A.json B.json  which pages and record fields differ, and by how much the pixels do

The pages are rendered once, on one machine, so only the pipeline's arithmetic is compared (not FreeType's).
"""

import hashlib
import json
import platform
import sys
from pathlib import Path

import numpy as np

# The record's timing, different on every run and every machine.
_VOLATILE = {"seconds"}


def render(directory: Path) -> None:
    """Pages of every kind the synthetic source draws, at the skews and turns the tests use, at 300 and 150 dpi."""
    from station.capture.synthetic import KINDS, render_note, render_page

    cases = [(kind, skew, turn, 300) for kind in KINDS for skew, turn in ((0.0, 0), (2.7, 0), (-1.3, 90))]
    cases += [("text", 0.4, 180, 150), ("table", -3.9, 270, 150)]
    index = {}
    for i, (kind, skew, turn, dpi) in enumerate(cases):
        for index_, side in ((0, "front"), (1, "back")):
            name = f"{i:02d}-{kind}-{side}"
            np.save(directory / f"{name}.npy", render_page(7, index_, dpi, kind=kind, skew_deg=skew,
                                                           orientation=turn if side == "front" else 0).image)
            index[name] = {"kind": kind, "skew_deg": skew, "orientation": turn, "dpi": dpi}
    np.save(directory / "99-note.npy", render_note("第一页", 150, skew_deg=0.8).image)
    index["99-note"] = {"kind": "note", "skew_deg": 0.8, "orientation": 0, "dpi": 150}
    (directory / "index.json").write_text(json.dumps(index))


def digest(directory: Path) -> dict:
    """Each page processed on this machine: its encoded file's SHA-256 and record (files kept beside)."""
    from station.pipeline import process_page

    machine = platform.machine()
    out = directory / machine
    out.mkdir(exist_ok=True)
    pages = {}
    index = json.loads((directory / "index.json").read_text())
    for path in sorted(directory.glob("*.npy")):
        page = process_page(np.load(path), index[path.stem]["dpi"])
        (out / (path.stem + page.suffix)).write_bytes(page.data)
        record = {k: v for k, v in page.record.items() if k not in _VOLATILE}
        pages[path.stem] = {"sha256": hashlib.sha256(page.data).hexdigest(), "file": f"{machine}/{path.stem}{page.suffix}",
                            "record": record}
    return {"machine": machine, "pages": pages}


def compare(a_path: Path, b_path: Path) -> int:
    """Print what differs between two digests; 1 when anything does."""
    from PIL import Image

    a, b = (json.loads(p.read_text()) for p in (a_path, b_path))
    same = differ = 0
    for name in sorted(a["pages"]):
        pa, pb = a["pages"][name], b["pages"].get(name)
        if pb is None:
            print(f"  {name}: missing on {b['machine']}")
            differ += 1
            continue
        fields = {k: (pa["record"].get(k), pb["record"].get(k)) for k in pa["record"].keys() | pb["record"].keys()
                  if pa["record"].get(k) != pb["record"].get(k)}
        if pa["sha256"] == pb["sha256"] and not fields:
            same += 1
            continue
        differ += 1
        line = f"  {name}: "
        if pa["sha256"] != pb["sha256"]:
            ia, ib = (np.asarray(Image.open(path.parent / p["file"])) for path, p in ((a_path, pa), (b_path, pb)))
            if ia.shape != ib.shape:
                line += f"image {ia.shape} vs {ib.shape}"
            else:
                d = np.abs(ia.astype(np.int16) - ib.astype(np.int16))
                line += (f"bytes differ; pixels differing {100 * np.count_nonzero(d) / d.size:.3f} %, "
                         f"max |Δ| {int(d.max())}, mean |Δ| {float(d.mean()):.4f}")
        else:
            line += "same bytes"
        for k, (va, vb) in sorted(fields.items()):
            line += f"; {k}: {va!r} ({a['machine']}) vs {vb!r} ({b['machine']})"
        print(line)
    print(f"{same} pages identical (bytes and record), {differ} differ — {a['machine']} vs {b['machine']}")
    return 1 if differ else 0


def main(argv: list[str]) -> int:
    command, *args = argv
    if command == "render":
        render(Path(args[0]))
    elif command == "digest":
        print(json.dumps(digest(Path(args[0])), ensure_ascii=False))
    elif command == "compare":
        return compare(Path(args[0]), Path(args[1]))
    else:
        raise SystemExit(f"unknown command {command!r}: render, digest or compare")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
