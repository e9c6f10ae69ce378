"""Real scans from public sources as labelled cases: each page as captured, skewed by a known angle on
a scanner backing, fed turned a quarter, and a blank back showing its bleed-through.

The scans themselves are data from other projects (tests/data/realscans/SOURCES.md names each source,
version, path and licence); pages.json beside it labels every file: its true resolution, what is on
it, the skew it came with (measured by hand), and whether tuning may look at it ("tune") or not
("held-out"). The pages whose licence allows it are committed in tests/data/realscans/files (each
label names the package, version, path inside it and licence, and says "committed"); the others are
found in $QUIRE_REALSCANS or ../shared/realscans when they are there. The known rotations are made
here with Pillow, never with Quire's own rotate.
"""

import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from station.pipeline import read_image

ROOT = Path(__file__).resolve().parents[1]
LABELS = ROOT / "tests" / "data" / "realscans" / "pages.json"
FILES = LABELS.parent / "files"         # the committed pages
MAX_SKEW_DEG = 15.0
_BACKING_MM = 6.0           # scanner backing shown around a sheet fed skewed
_CELL_MM = 0.5              # ink is located on a grid of this pitch to tell what an output lost
_INK_SHARE = 0.75           # a cell darker than this share of the paper holds ink


def corpus_dirs() -> list[Path]:
    """Every folder that holds corpus files, first match wins: $QUIRE_REALSCANS, the committed set,
    shared/realscans beside the repository."""
    found = []
    for candidate in (os.environ.get("QUIRE_REALSCANS"), FILES, ROOT.parent / "shared" / "realscans"):
        if candidate and Path(candidate).is_dir() and Path(candidate) not in found:
            found.append(Path(candidate))
    return found


def corpus_dir() -> Path | None:
    """The first folder that holds corpus files ($QUIRE_REALSCANS when set, else the committed set);
    ``locate`` finds a page in the others too."""
    for candidate in corpus_dirs():
        if any(candidate.glob("*.*")):
            return candidate
    return None


def locate(file: str, root: Path | None = None) -> Path | None:
    """Where one corpus file is: in ``root`` if it is there, else in the first of ``corpus_dirs``."""
    for folder in ([Path(root)] if root else []) + corpus_dirs():
        if (folder / file).is_file():
            return folder / file
    return None


def committed() -> dict[str, dict]:
    """The labels of the pages committed in tests/data/realscans/files."""
    return {file: label for file, label in labels().items() if label.get("committed")}


def available(root: Path | None = None) -> dict[str, dict]:
    """The labels of the pages found here: the committed set, and every other page $QUIRE_REALSCANS
    or shared/realscans holds."""
    return {file: label for file, label in labels().items() if locate(file, root) is not None}


@lru_cache(maxsize=1)
def labels() -> dict[str, dict]:
    """pages.json: file name → {source, dpi, tags, skew_deg, split, sha256}."""
    return json.loads(LABELS.read_text())


@dataclass(frozen=True)
class Case:
    """One labelled page as the pipeline gets it."""

    file: str
    variant: str            # "captured", "skewed", "turned" or "back"
    angle_deg: float        # rotation applied counter-clockwise before the quarter turn
    quarter: int            # quarter turn applied counter-clockwise (the page is fed turned)
    backing: int | None     # grey of the scanner backing shown around the sheet; None: none shown
    split: str

    @property
    def name(self) -> str:
        return f"{self.file}:{self.variant}"


@dataclass
class Rendered:
    """A case's pixels, resolution and truth, and where each pixel of the original went."""

    image: np.ndarray
    dpi: int
    truth: dict
    to_case: np.ndarray     # 3×3: original page pixel → case pixel
    original_shape: tuple[int, int]


def cases(pages: dict[str, dict] | None = None) -> list[Case]:
    """Every case of the pages found here (or of ``pages``), in a fixed order with fixed angles."""
    pages = available() if pages is None else pages
    out = []
    for file, label in sorted(pages.items()):
        rng = np.random.default_rng(int.from_bytes(hashlib.sha256(file.encode()).digest()[:8], "little"))
        angle = float(rng.uniform(-MAX_SKEW_DEG, MAX_SKEW_DEG))
        small = float(rng.uniform(-3.0, 3.0))
        quarter = int(rng.choice((90, 180, 270)))
        dark = int(rng.integers(15, 80))
        split = label["split"]
        out.append(Case(file, "captured", 0.0, 0, None, split))
        out.append(Case(file, "skewed", round(angle, 2), 0, dark if rng.random() < 0.6 else 235, split))
        out.append(Case(file, "turned", round(small, 2), quarter, dark, split))
        if "blank" not in label["tags"] and label.get("back", True):
            out.append(Case(file, "back", round(-angle / 5, 2), 0, dark, split))
    return out


@lru_cache(maxsize=2)
def read(file: str, root: Path) -> tuple[np.ndarray, int]:
    """A corpus file as grey or RGB pixels (read-only: the last two files read are kept for the cases
    that follow), and its true resolution."""
    path = locate(file, root)
    if path is None:
        raise FileNotFoundError(f"{file}: not in {root} nor in {', '.join(map(str, corpus_dirs()))}; "
                                "tests/data/realscans/SOURCES.md says where it comes from")
    image, _ = read_image(path)
    image.setflags(write=False)
    return image, labels()[file]["dpi"]


def cache_dir() -> Path | None:
    """Where rendered cases are kept between runs: $QUIRE_REALSCANS_CACHE ("off": nowhere), else
    quire/realscans in the user's cache folder ($XDG_CACHE_HOME or ~/.cache) — but not under CI=true
    unless asked: a run that starts from nothing pays for writing the cache (about 0.17 s CPU a
    case) and never reads it back."""
    setting = os.environ.get("QUIRE_REALSCANS_CACHE")
    if setting == "off":
        return None
    if setting:
        return Path(setting)
    if os.environ.get("CI", "").lower() == "true":
        return None
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "quire" / "realscans"


def render(case: Case, root: Path) -> Rendered:
    """The case's pixels and truth labels.

    A case turned or padded is kept in ``cache_dir`` (lossless PNG, named by the page's SHA-256 and
    the case): Pillow's bicubic turn of a 300-dpi page costs about four times reading it back.
    """
    label = labels()[case.file]
    original, dpi = read(case.file, root)
    h, w = original.shape[:2]
    if case.variant == "captured":
        image, moved = original, np.eye(3)
    else:
        image, moved = _cached(case, label["sha256"], lambda: _made(case, original, dpi))
    native = label["skew_deg"]
    skew = None if native is None else _fold(native * (-1 if case.variant == "back" else 1) + case.angle_deg)
    truth = {"skew_deg": skew, "orientation": (-case.quarter) % 360, "blank": case.variant == "back"
             or "blank" in label["tags"], "colour": "colour-content" in label["tags"], "text": "text" in label["tags"]}
    return Rendered(image, dpi, truth, moved, (h, w))


def _made(case: Case, original: np.ndarray, dpi: int) -> tuple[np.ndarray, np.ndarray]:
    """The case's pixels made from the original page, and the 3×3 from the page's pixels to them."""
    if case.variant == "back":
        original = _bleed_through(original, dpi)
    moved = np.eye(3)
    image = original
    if case.backing is not None:
        pad = round(_BACKING_MM * dpi / 25.4)
        image = _pad(original, pad, case.backing)
        moved = _translate(pad, pad)
    if case.angle_deg or case.quarter:
        image, turn = _rotate(image, case.angle_deg + case.quarter, case.backing)
        moved = turn @ moved
    return image, moved


_CACHE_FORMAT = 1           # raise when _made or its helpers change what they draw


def _cached(case: Case, sha256: str, make) -> tuple[np.ndarray, np.ndarray]:
    """``make()``, or what it gave before for this page and case as ``cache_dir`` keeps it.

    Written to a temporary name and moved into place, so workers running side by side never read
    half a file; the matrix is written before the image, whose presence says both are whole.
    """
    folder = cache_dir()
    if folder is None:
        return make()
    stem = f"{sha256[:24]}-{case.variant}-{case.angle_deg:+.2f}-{case.quarter}-{case.backing}-f{_CACHE_FORMAT}"
    picture, matrix = folder / f"{stem}.png", folder / f"{stem}.json"
    if picture.is_file() and matrix.is_file():
        image = cv2.imread(str(picture), cv2.IMREAD_UNCHANGED)
        if image is not None:
            return (image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)), \
                np.array(json.loads(matrix.read_text()))
    image, moved = make()
    folder.mkdir(parents=True, exist_ok=True)
    for target, write in ((matrix, lambda tmp: Path(tmp).write_text(json.dumps(moved.tolist()))),
                          (picture, lambda tmp: cv2.imwrite(tmp, image if image.ndim == 2 else
                                                            cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                                                            [cv2.IMWRITE_PNG_COMPRESSION, 1]))):
        tmp = f"{target}.{os.getpid()}.tmp.png"
        write(tmp)
        os.replace(tmp, target)
    return image, moved


def ink_cells(original: np.ndarray, dpi: int) -> tuple[np.ndarray, float]:
    """Centres (x, y, in the original's pixels) of the grid cells that hold the page's ink, and a cell's area in mm².

    Ink is what is markedly darker than the paper, in marks that do not touch the image's border:
    the scanner backing and a frame around the scan touch it, and are not the page's content.
    """
    grey = original if original.ndim == 2 else cv2.cvtColor(original, cv2.COLOR_RGB2GRAY)
    step = max(1, round(_CELL_MM * dpi / 25.4))
    rows, cols = grey.shape[0] // step, grey.shape[1] // step
    cells = cv2.resize(grey[:rows * step, :cols * step], (cols, rows), interpolation=cv2.INTER_AREA)
    level = float(np.percentile(cells, 90))
    ink = (cells < _INK_SHARE * level).astype(np.uint8)
    count, marks, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    x, y, bw, bh = stats[:, 0], stats[:, 1], stats[:, 2], stats[:, 3]
    border = (x == 0) | (y == 0) | (x + bw >= cols) | (y + bh >= rows)
    border[0] = True
    keep = ~border[marks]
    ys, xs = np.nonzero(keep)
    centres = np.stack([(xs + 0.5) * step - 0.5, (ys + 0.5) * step - 0.5], axis=1)
    return centres, (step * 25.4 / dpi) ** 2


def lost_mm2(cells: np.ndarray, cell_mm2: float, to_case: np.ndarray, case_shape: tuple[int, ...],
             record: dict, out_size: tuple[int, int]) -> float:
    """The ink (mm²) of the original page that the output does not show, found by mapping each ink
    cell through the case's own turn and then the rotation and crop the page's record states."""
    to_out = output_matrix(case_shape, record) @ to_case
    mapped = cells @ to_out[:2, :2].T + to_out[:2, 2]
    w, h = out_size
    outside = (mapped[:, 0] < -1) | (mapped[:, 1] < -1) | (mapped[:, 0] > w) | (mapped[:, 1] > h)
    return float(outside.sum()) * cell_mm2


def output_matrix(case_shape: tuple[int, ...], record: dict) -> np.ndarray:
    """3×3 from the captured image's pixels to the output's, from the record: the rotation about the
    image's centre onto a canvas that holds all of it, the crop on that canvas, then the quarter turn."""
    h, w = case_shape[:2]
    angle = np.radians(record["rotation_deg"])
    cos, sin = np.cos(angle), np.sin(angle)
    canvas_w = int(np.ceil(round(abs(w * cos) + abs(h * sin), 6)))
    canvas_h = int(np.ceil(round(abs(w * sin) + abs(h * cos), 6)))
    # Counter-clockwise on the screen (y down) about the image's centre, onto the canvas's centre.
    rotate = np.array([[cos, sin, 0.0], [-sin, cos, 0.0], [0.0, 0.0, 1.0]])
    matrix = _translate((canvas_w - 1) / 2, (canvas_h - 1) / 2) @ rotate @ _translate(-(w - 1) / 2, -(h - 1) / 2)
    x, y, cw, ch = record["crop"] or (0, 0, canvas_w, canvas_h)
    matrix = _translate(-x, -y) @ matrix
    return _quarter(cw, ch, record["orientation"]) @ matrix


def _quarter(w: int, h: int, turn_deg: int) -> np.ndarray:
    return {0: np.eye(3),
            90: np.array([[0.0, 1, 0], [-1, 0, w - 1], [0, 0, 1]]),
            180: np.array([[-1.0, 0, w - 1], [0, -1, h - 1], [0, 0, 1]]),
            270: np.array([[0.0, -1, h - 1], [1, 0, 0], [0, 0, 1]])}[turn_deg % 360]


def _translate(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0, dx], [0, 1, dy], [0, 0, 1]])


def _fold(angle: float) -> float:
    return (angle + 45.0) % 90.0 - 45.0


def _pad(image: np.ndarray, pad: int, grey: int) -> np.ndarray:
    value = (grey,) * (1 if image.ndim == 2 else 3)
    return cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=value)


def _rotate(image: np.ndarray, angle_deg: float, backing: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The image turned ``angle_deg`` counter-clockwise about its centre by Pillow, onto a canvas that
    holds all of it (filled with the backing, or with the paper's own tone), and the 3×3 it applied."""
    h, w = image.shape[:2]
    fill = backing if backing is not None else int(np.percentile(image[::8, ::8], 90))
    turned = Image.fromarray(image).rotate(angle_deg, resample=Image.Resampling.BICUBIC, expand=True,
                                           fillcolor=fill if image.ndim == 2 else (fill,) * 3)
    nw, nh = turned.size
    a = np.radians(angle_deg)
    rotate = np.array([[np.cos(a), np.sin(a), 0.0], [-np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    # Pillow turns about the image's geometric centre (w/2, h/2) in pixel-corner coordinates.
    matrix = _translate(nw / 2 - 0.5, nh / 2 - 0.5) @ rotate @ _translate(-(w / 2 - 0.5), -(h / 2 - 0.5))
    return np.asarray(turned), matrix


def _bleed_through(original: np.ndarray, dpi: int) -> np.ndarray:
    """The blank back of this sheet: the page's own paper, with its print showing through mirrored and faint."""
    grey = original if original.ndim == 2 else cv2.cvtColor(original, cv2.COLOR_RGB2GRAY)
    level = float(np.percentile(grey[::4, ::4], 90))
    blur = max(1, round(0.15 * dpi / 25.4)) | 1
    ghost = cv2.GaussianBlur(cv2.flip(grey, 1), (blur * 2 + 1, blur * 2 + 1), 0).astype(np.float32)
    # Print at a tenth of its contrast: what shows through 80 g/m² paper.
    shade = level - 0.1 * np.clip(level - ghost, 0, None)
    paper = np.full(grey.shape, level, np.float32)
    if original.ndim == 3:
        tone = np.percentile(original[::4, ::4].reshape(-1, 3), 90, axis=0).astype(np.float32)
        out = np.clip(tone[None, None, :] * (shade / max(level, 1))[..., None], 0, 255)
    else:
        out = np.clip(paper - (level - shade), 0, 255)
    return out.astype(np.uint8)
