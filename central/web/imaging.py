"""Page images for the screen and for export: scaled by the archive, the reader's watermark burned in."""

import io
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

from PIL import Image, ImageDraw, ImageFont

from ..errors import ConfigError

SCREEN_PX = 1600    # long side of a page on screen
THUMB_PX = 240      # long side of a thumbnail
JPEG_QUALITY = 85
FONT_PATHS = (Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),
              Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
              Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"))
INK = (200, 30, 30)  # a red no copy can pass off as part of the original


def font_path() -> Path:
    """An installed font with Chinese glyphs, or a ConfigError saying which package to install."""
    found = next((p for p in FONT_PATHS if p.exists()), None)
    if found is None:
        raise ConfigError("the web console's watermark needs a Chinese font: apt-get install fonts-wqy-microhei")
    return found


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font_path()), size)


def _decoded(blob: BinaryIO, long_side: int | None) -> Image.Image:
    img = Image.open(blob)
    if long_side:
        scale = long_side / max(img.size)
        # JPEG decodes at 1/2, 1/4, 1/8 directly (DCT scaling): far less work than decoding it whole.
        img.draft(img.mode, (max(1, int(img.width * scale)), max(1, int(img.height * scale))))
    # Grey pages stay grey until the watermark's colour is burnt in: a third of the pixels to scale.
    img = img.convert("RGB") if img.mode not in ("L", "RGB") else img.copy()
    if long_side and max(img.size) > long_side:
        img.thumbnail((long_side, long_side), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return img


@lru_cache(maxsize=64)
def _tile(lines: tuple[str, ...], size: int) -> Image.Image:
    """The watermark's text, faint and turned 30°, as one RGBA tile to repeat over the page."""
    font = _font(size)
    boxes = [font.getbbox(line) for line in lines]
    width = max(b[2] for b in boxes) + size * 2
    height = (size + size // 2) * len(lines) + size * 2
    tile = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(tile)
    for i, line in enumerate(lines):
        draw.text((size, size + i * (size + size // 2)), line, font=font, fill=(*INK, 80))
    return tile.rotate(30, expand=True, resample=Image.Resampling.BILINEAR)


@lru_cache(maxsize=32)
def _overlay(size: tuple[int, int], lines: tuple[str, ...]) -> Image.Image:
    """The whole watermark for a page of ``size``: the tile repeated across it and a band along its foot.
    Kept for the next page of the same size and lines (a reader paging through a dossier, within the minute)."""
    width, height = size
    tile = _tile(lines, max(12, width // 45))
    overlay = Image.new("RGBA", size, (0, 0, 0, 0))
    for y in range(-tile.height // 3, height, tile.height * 3 // 4):
        offset = (y // tile.height) % 2 * tile.width // 2
        for x in range(-offset, width, tile.width):
            overlay.alpha_composite(tile, (max(x, 0), max(y, 0)), (max(-x, 0), max(-y, 0)))
    band_font = _font(max(11, max(12, width // 45) * 2 // 3))
    band_h = int(band_font.size * 1.8)
    draw = ImageDraw.Draw(overlay)
    draw.rectangle((0, height - band_h, width, height), fill=(255, 255, 255, 200))
    draw.text((band_font.size // 2, height - band_h + band_font.size // 3), "  ·  ".join(lines),
              font=band_font, fill=(*INK, 255))
    return overlay


def watermark(img: Image.Image, lines: tuple[str, ...]) -> Image.Image:
    """Burn ``lines`` into the pixels: repeated across the page and in a band along its foot."""
    overlay = _overlay(img.size, lines)
    out = img.convert("RGB")   # a copy: the caller's image stays as it was
    out.paste(overlay, (0, 0), overlay)
    return out


def screen_jpeg(blob: BinaryIO, lines: tuple[str, ...] | None, long_side: int = SCREEN_PX) -> bytes:
    """The stored page (open for reading) at screen size as JPEG, watermarked with ``lines`` (None: without,
    for comparison)."""
    img = _decoded(blob, long_side)
    if lines:
        img = watermark(img, lines)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def export_pdf(pages: list[tuple[BinaryIO, int]], lines: tuple[str, ...]) -> bytes:
    """A PDF of the stored pages (open for reading) at their own resolution (``(blob, dpi)``), each watermarked."""
    images = [watermark(_decoded(blob, None), lines) for blob, _ in pages]
    buf = io.BytesIO()
    images[0].save(buf, "PDF", save_all=True, append_images=images[1:], resolution=float(pages[0][1]),
                   title="数字化阅档 导出件（带水印）", producer="Quire")
    return buf.getvalue()
