"""Cover-sheet recognition: how many sheets are found, how many content pages are taken for one, and
what looking costs on an ordinary page against the pipeline's own time per page (same run, medians).

    .venv/bin/python -m bench.coversheets [--pages N] [--seed S]

The stacks are made the way a scanning room makes them: sheets printed by Quire's own PDF and
rendered back by poppler's pdftoppm (another renderer) at 200, 300 and 600 dpi, laid on a scanner's
dark backing turned up to ±15° or upside down, with JPEG noise, low contrast or bleed-through, mixed
with synthetic content pages that carry their own QR codes and barcodes. Tests use the same stacks.
"""

import argparse
import math
import statistics
import subprocess
import sys
import tempfile
import time
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import segno

from station.capture.synthetic import render_page
from station.coversheet import Sheet, write_pdf
from station.pipeline import PipelineConfig, process_page
from station.pipeline.coversheet import find

DPIS = (200, 300, 600)
BACKING = 52


@lru_cache(maxsize=16)
def printed(sheets: tuple[Sheet, ...], dpi: int) -> tuple[np.ndarray, ...]:
    """The sheets as Quire prints them, rendered back by pdftoppm at ``dpi`` (RGB)."""
    with tempfile.TemporaryDirectory() as tmp:
        pdf = Path(tmp) / "sheets.pdf"
        write_pdf(pdf, list(sheets))
        subprocess.run(["pdftoppm", "-r", str(dpi), str(pdf), str(Path(tmp) / "p")], check=True,
                       capture_output=True)
        out = []
        for path in sorted(Path(tmp).glob("p-*.ppm")):
            out.append(cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
    return tuple(out)


def scanned(paper: np.ndarray, dpi: int, rng: np.random.Generator, *, angle: float = 0.0,
            upside_down: bool = False, jpeg_quality: int | None = None, contrast: tuple[int, int] | None = None,
            bleed: np.ndarray | None = None) -> np.ndarray:
    """A sheet of paper as a scanner delivers it: on the dark backing, turned, degraded as asked."""
    page = paper
    if bleed is not None:       # the back's ink showing through, mirrored and blurred
        back = cv2.cvtColor(cv2.resize(bleed, (paper.shape[1], paper.shape[0])), cv2.COLOR_RGB2GRAY)
        ink = cv2.bitwise_not(back)
        ink = cv2.GaussianBlur(cv2.flip(ink, 1), (0, 0), dpi / 100)
        page = cv2.subtract(page, cv2.cvtColor(cv2.convertScaleAbs(ink, alpha=0.18), cv2.COLOR_GRAY2RGB))
    if contrast is not None:    # a faded or pale print: black becomes grey, white becomes cream
        lo, hi = contrast
        page = cv2.convertScaleAbs(page, alpha=(hi - lo) / 255.0, beta=lo)
    if upside_down:
        page = cv2.rotate(page, cv2.ROTATE_180)
    h, w = page.shape[:2]
    a = math.radians(angle)
    margin = round(6 * dpi / 25.4)
    bw = math.ceil(w * abs(math.cos(a)) + h * abs(math.sin(a))) + 2 * margin
    bh = math.ceil(w * abs(math.sin(a)) + h * abs(math.cos(a))) + 2 * margin
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, 1.0)
    m[:, 2] += ((bw - w) / 2, (bh - h) / 2)
    image = cv2.warpAffine(page, m, (bw, bh), flags=cv2.INTER_LINEAR, borderValue=(BACKING,) * 3)
    noise = cv2.cvtColor(rng.integers(0, 9, size=image.shape[:2], dtype=np.uint8), cv2.COLOR_GRAY2RGB)
    image = cv2.subtract(cv2.add(image, noise), (4, 4, 4, 0))     # sensor noise of ±4 grey levels
    if jpeg_quality is not None:
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    return image


def content_page(seed: int, dpi: int, rng: np.random.Generator, *, codes: bool = True) -> np.ndarray:
    """A synthetic content page; with ``codes``, carrying a QR code of its own and a barcode-like strip."""
    image = render_page(seed, 0, dpi, duplex=False).image.copy()
    if not codes:
        return image
    px_mm = dpi / 25.4
    text = rng.choice(["https://example.gov.cn/verify?id=" + str(rng.integers(1e9)),
                       "QUIRE-COVER/2\nD-9\n1-1\nnot ours", "发票代码 " + str(rng.integers(1e9)), "QUIRE-COVER/1"])
    qr = segno.make(str(text), error="m")
    side = round(float(rng.uniform(18, 60)) * px_mm)
    matrix = np.array([[0 if dark else 255 for dark in row] for row in qr.matrix], np.uint8)
    matrix = np.pad(matrix, 4, constant_values=255)
    tile = cv2.resize(matrix, (side, side), interpolation=cv2.INTER_NEAREST)
    h, w = image.shape[:2]
    y, x = int(rng.integers(h // 8, h - side - h // 8)), int(rng.integers(w // 8, w - side - w // 8))
    image[y:y + side, x:x + side] = tile[..., None]
    bars = rng.integers(1, 4, 60).repeat(2)     # a 1-D barcode's look: bars and gaps of 1–3 units
    unit = max(1, round(0.33 * px_mm))
    strip, pos = np.full((round(12 * px_mm), int(bars.sum()) * unit), 255, np.uint8), 0
    for i, width in enumerate(bars):
        if i % 2 == 0:
            strip[:, pos:pos + width * unit] = 0
        pos += width * unit
    sy, sx = h - round(40 * px_mm), round(25 * px_mm)
    sw = min(strip.shape[1], w - sx - 10)
    image[sy:sy + strip.shape[0], sx:sx + sw] = strip[:, :sw, None]
    if rng.random() < 0.5:  # and sometimes a large dark block (a photo, a blacked-out box) beside it
        bw, bh = round(150 * px_mm), round(40 * px_mm)
        image[round(60 * px_mm):round(60 * px_mm) + bh, round(30 * px_mm):round(30 * px_mm) + bw] = 20
    return image


VARIANTS = ("plain", "skewed", "upside-down", "jpeg", "low-contrast", "bleed-through")


def degrade(paper: np.ndarray, dpi: int, variant: str, rng: np.random.Generator,
            back: np.ndarray | None = None) -> np.ndarray:
    """One of VARIANTS, with a random skew within ±15° for all but 'plain'."""
    angle = 0.0 if variant == "plain" else float(rng.uniform(-15, 15))
    return scanned(paper, dpi, rng, angle=angle,
                   upside_down=variant == "upside-down" or (variant != "plain" and rng.random() < 0.3),
                   jpeg_quality=int(rng.integers(30, 60)) if variant == "jpeg" else 85,
                   contrast=(int(rng.integers(90, 120)), int(rng.integers(190, 215)))
                   if variant == "low-contrast" else None,
                   bleed=back if variant == "bleed-through" else None)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench.coversheets", description=__doc__.split("\n\n")[0])
    ap.add_argument("--pages", type=int, default=120, help="cover sheets per resolution (default 120)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    sheets = (Sheet("D-0001", "1-1", "干部履历表"), Sheet("D-0001", "4-2-3", "专业技术职务任职资格评审表（高级）"),
              Sheet("D-0001"))
    found = missed = false = content = 0
    look_ms, pipe_ms = [], []
    config = PipelineConfig()
    for dpi in DPIS:
        papers = printed(sheets, dpi)
        n = args.pages if dpi < 600 else max(6, args.pages // 10)
        for i in range(n):
            variant = VARIANTS[i % len(VARIANTS)]
            back = content_page(1000 + i, dpi, rng, codes=False) if variant == "bleed-through" else None
            image = degrade(papers[i % len(papers)], dpi, variant, rng, back)
            hit = find(image, dpi)
            if hit is not None and hit.sheet == sheets[i % len(sheets)]:
                found += 1
            else:
                missed += 1
                print(f"  missed: {dpi} dpi, {variant}", file=sys.stderr)
        m = args.pages // 2 if dpi == 300 else max(4, args.pages // 10)
        for i in range(m):
            page = scanned(content_page(i, dpi, rng, codes=i % 2 == 0), dpi, rng, angle=float(rng.uniform(-3, 3)))
            started = time.perf_counter()
            hit = find(page, dpi)
            took = time.perf_counter() - started
            content += 1
            false += hit is not None
            if dpi == 300 and i % 2 == 1:       # pages with no code at all: the cost every page pays
                look_ms.append(took * 1000)
                started = time.perf_counter()
                process_page(page, dpi, config)
                pipe_ms.append((time.perf_counter() - started) * 1000)
    total = found + missed
    print(f"cover sheets found: {found}/{total} ({100 * found / total:.2f} %), at {', '.join(map(str, DPIS))} dpi, "
          f"variants {', '.join(VARIANTS)}")
    print(f"content pages taken for a sheet: {false}/{content} (half carry their own QR code and a barcode)")
    look, pipe = statistics.median(look_ms), statistics.median(pipe_ms)
    print(f"300 dpi page with no sheet: looking {look:.2f} ms vs the pipeline's {pipe:.1f} ms per page "
          f"(medians of {len(look_ms)}), ratio {100 * look / pipe:.2f} %")
    return 0 if missed == 0 and false == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
