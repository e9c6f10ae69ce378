"""Synthetic scanner: realistic A4 personnel-file pages with known skew and orientation, for the demo,
tests and bench."""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .base import RawPage

A4_MM = (210.0, 297.0)
KINDS = ("text", "table", "red_heading", "seal", "photo", "sparse")
ORIENTATIONS = (0, 90, 180, 270)    # degrees counter-clockwise that turn a page as fed upright

_CJK_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
_LATIN_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
_INK = (28, 28, 30)
_RED = (214, 36, 40)
_BLUE = (36, 52, 150)
_SCANNER_BG = 52            # grey level of the scanner's dark backing
_PHOTO_BACKDROPS = {"blue": (67, 142, 219), "white": (236, 236, 232), "red": (200, 30, 36)}

_CJK = {
    "headings": ["干部履历表", "干部任免审批表", "年度考核登记表", "入党志愿书", "工资变动审批表",
                 "个人有关事项报告表", "学历学位证明材料", "干部考察材料"],
    "fields": ["姓名", "性别", "民族", "出生年月", "籍贯", "出生地", "参加工作时间", "入党时间",
               "健康状况", "学历", "学位", "毕业院校", "专业", "工作单位及职务", "现任职务",
               "任职时间", "政治面貌", "年度考核结果", "奖惩情况", "家庭主要成员"],
    "names": ["张伟", "王芳", "李强", "刘洋", "陈静", "杨军", "赵敏", "黄磊", "周婷", "吴刚"],
    "values": ["男", "女", "汉族", "1965年03月", "1972年11月", "山东济南", "河北保定", "1986年07月",
               "1991年06月", "健康", "大学本科", "硕士研究生", "山东大学", "中文系汉语言文学",
               "县人民政府办公室副主任", "中共党员", "称职", "优秀", "县委组织部干部科科长"],
    "sentences": [
        "该同志政治立场坚定，认真贯彻执行党的路线方针政策。",
        "工作中认真负责，团结同志，作风踏实，群众基础较好。",
        "一九八五年七月毕业于山东大学中文系，同年参加工作。",
        "历任县委办公室科员、副主任、主任等职。",
        "经组织审查，该同志历史清楚，无政治问题。",
        "本人对以上内容确认无误，如有不实，愿承担相应责任。",
        "在基层工作期间，深入调查研究，较好地完成了各项任务。",
        "能够严格遵守廉洁自律各项规定，未发现违纪违法问题。",
        "根据工作需要，经研究决定，任命该同志为县委组织部副部长。",
        "年度考核中被评为优秀等次，予以嘉奖一次。",
    ],
    "issuers": ["中共平安县委组织部", "长宁县人民政府", "中共东山县纪律检查委员会", "清河县人事局"],
    "doc_no": "组发〔{year}〕{n}号",
}
_LATIN = {
    "headings": ["CADRE RESUME FORM", "APPOINTMENT APPROVAL", "ANNUAL APPRAISAL", "SALARY CHANGE"],
    "fields": ["Name", "Sex", "Born", "Native place", "Joined work", "Education", "Unit and post",
               "Party member since", "Health", "Appraisal"],
    "names": ["Zhang Wei", "Wang Fang", "Li Qiang", "Liu Yang", "Chen Jing"],
    "values": ["male", "female", "1965-03", "Jinan", "1986-07", "university", "county office",
               "deputy director", "excellent", "healthy"],
    "sentences": [
        "The comrade is politically steady and carries out the policies conscientiously. ",
        "Works responsibly, unites colleagues and keeps a down-to-earth style. ",
        "Graduated from Shandong University in July 1985 and began work the same year. ",
        "Review by the organisation found the history clear and without problems. ",
    ],
    "issuers": ["PING'AN COUNTY ORGANISATION DEPT", "CHANGNING COUNTY GOVERNMENT"],
    "doc_no": "Org. No. {year}-{n}",
}


class SyntheticSource:
    """A source of generated scanned sheets (front, then back when duplex) with ground truth."""

    name = "synthetic"

    def __init__(self, seed: int = 0, sheets: int = 3, dpi: int = 300, duplex: bool = True,
                 max_skew_deg: float = 4.0, background: bool = True, title: str = ""):
        if sheets < 0 or dpi < 50:
            raise ValueError(f"synthetic source needs sheets >= 0 and dpi >= 50, not {sheets}, {dpi}")
        self.seed, self.sheets, self.dpi, self.duplex = seed, sheets, dpi, duplex
        self.max_skew_deg, self.background, self.title = max_skew_deg, background, title
        self.first_sheet = 0
        self._closed = False

    def resume_at(self, page: int) -> None:
        """The batch goes on at ``page``: the operator feeds the sheets not yet captured, as into an ADF."""
        self.first_sheet = (page - 1) // (2 if self.duplex else 1)

    def pages(self) -> Iterator[RawPage]:
        """Yield each sheet's front and (when duplex) back until the sheets run out or close()."""
        for sheet in range(self.first_sheet, self.sheets):
            sides = ("front", "back") if self.duplex else ("front",)
            for page in render_sheet(self.seed, sheet, self.dpi, sides=sides, max_skew_deg=self.max_skew_deg,
                                     background=self.background, title=self.title):
                if self._closed:
                    return
                yield page

    def close(self) -> None:
        """Stop yielding pages."""
        self._closed = True


def render_page(seed: int, index: int, dpi: int = 300, *, duplex: bool = True, max_skew_deg: float = 4.0,
                background: bool = True, title: str = "", skew_deg: float | None = None,
                kind: str | None = None, orientation: int = 0, backing: int = _SCANNER_BG) -> RawPage:
    """The page a SyntheticSource with these settings yields at position ``index`` (0-based)."""
    sheet, side = divmod(index, 2) if duplex else (index, 0)
    (page,) = render_sheet(seed, sheet, dpi, sides=(("front", "back")[side],), max_skew_deg=max_skew_deg,
                           background=background, title=title, skew_deg=skew_deg, kind=kind,
                           orientation=orientation, backing=backing)
    return page


def render_sheet(seed: int, sheet: int, dpi: int = 300, *, sides: tuple[str, ...] = ("front", "back"),
                 max_skew_deg: float = 4.0, background: bool = True, title: str = "",
                 skew_deg: float | None = None, kind: str | None = None, orientation: int = 0,
                 backing: int = _SCANNER_BG) -> list[RawPage]:
    """Render the requested sides of one sheet; the back shows the front's faint mirrored bleed-through.

    ``orientation`` is how far the sheet was fed turned: the degrees counter-clockwise (0, 90, 180,
    270) that bring its pages upright. ``backing`` is the grey level of the scanner's backing.
    """
    if orientation not in ORIENTATIONS:
        raise ValueError(f"orientation must be one of {ORIENTATIONS}, not {orientation!r}")
    rng = np.random.default_rng([seed, sheet])
    # Draw the sheet's random choices in a fixed order so they do not depend on dpi or the overrides.
    drawn_skew = float(rng.uniform(-max_skew_deg, max_skew_deg))
    angle = drawn_skew if skew_deg is None else float(skew_deg)
    margins_mm = rng.uniform(3.0, 8.0, size=4)                  # left, top, right, bottom
    holes = bool(rng.random() < 0.5)
    bleed = float(rng.uniform(0.10, 0.16))
    tone = float(rng.uniform(238, 250))
    kind = kind or KINDS[(seed + sheet) % len(KINDS)]
    front, has_red, has_colour = _draw_front(np.random.default_rng([seed, sheet, 7]), kind, dpi, tone, title)
    mm = dpi / 25.4
    hole_centres = [(12 * mm, front.shape[0] / 2 + dy * mm) for dy in (-40, 40)] if holes else []
    pages = []
    for side in sides:
        noise_rng = np.random.default_rng([seed, sheet, 0 if side == "front" else 1])
        if side == "front":
            paper, side_angle, side_margins = front.copy(), angle, margins_mm
            centres = hole_centres
        else:
            paper = _bleed_through(front, tone, bleed, dpi)
            side_angle = -angle                         # the sheet is turned over, so its skew mirrors
            side_margins = margins_mm[[2, 1, 0, 3]]
            centres = [(paper.shape[1] - 1 - x, y) for x, y in hole_centres]
        _specks(paper, noise_rng, dpi)
        if background:
            _punch(paper, centres, backing, dpi)
        # Fed turned: the content lies turned clockwise by ``orientation`` on the scanner.
        paper = np.ascontiguousarray(np.rot90(paper, -(orientation // 90)))
        image, paper_box = _place(paper, side_angle, side_margins * mm, background, tone, backing)
        image = _scanner_noise(image, noise_rng, dpi)
        truth = {"skew_deg": round(side_angle, 4), "orientation": orientation, "blank": side != "front",
                 "has_red": has_red and side == "front", "has_colour": has_colour and side == "front",
                 "paper_box": paper_box, "sheet": sheet, "side": side, "kind": kind if side == "front" else "blank",
                 "punch_holes": holes and background}
        # A truthful simulated scanner: its geometry covers exactly the pixels it delivers at its dpi.
        area = (image.shape[1] * 25.4 / dpi, image.shape[0] * 25.4 / dpi)
        pages.append(RawPage(image, dpi, side=side, origin=f"synthetic:{seed}:{sheet}:{side}", truth=truth,
                             area_mm=area))
    return pages


def render_note(text: str, dpi: int = 300, *, skew_deg: float = 1.0, size_mm: float = 5.0,
                seed: int = 0, orientation: int = 0) -> RawPage:
    """A sheet that is empty but for one line of ``text`` mid-page: the hard cases for blank, skew and
    orientation."""
    mm = dpi / 25.4
    tone = 245.0
    sheet = Image.new("RGB", (round(A4_MM[0] * mm), round(A4_MM[1] * mm)), (245, 243, 238))
    ImageDraw.Draw(sheet).text((60 * mm, 150 * mm), text, font=_font(round(size_mm * mm))[0], fill=_INK)
    paper = np.ascontiguousarray(np.rot90(np.asarray(sheet), -(orientation // 90)))
    image, paper_box = _place(paper, skew_deg, np.full(4, 5 * mm), True, tone, _SCANNER_BG)
    image = _scanner_noise(image, np.random.default_rng([seed, 99]), dpi)
    truth = {"skew_deg": skew_deg, "orientation": orientation, "blank": not text.strip(), "has_red": False, "has_colour": False,
             "paper_box": paper_box, "sheet": 0, "side": "front", "kind": "note", "punch_holes": False}
    return RawPage(image, dpi, origin=f"synthetic:note:{text}", truth=truth)


@lru_cache(maxsize=32)
def _font(size_px: int) -> tuple[ImageFont.FreeTypeFont, bool]:
    if _CJK_FONT.exists():
        return ImageFont.truetype(str(_CJK_FONT), size_px), True
    return ImageFont.truetype(str(_LATIN_FONT), size_px), False


def _draw_front(rng: np.random.Generator, kind: str, dpi: int, tone: float,
                title: str) -> tuple[np.ndarray, bool, bool]:
    """The front of a sheet as an RGB array in paper coordinates; also whether it has red / any colour."""
    mm = dpi / 25.4
    size = (round(A4_MM[0] * mm), round(A4_MM[1] * mm))
    paper_rgb = (round(tone), round(tone - 2), round(tone - 7))      # slightly warm, as real paper is
    img = Image.new("RGB", size, paper_rgb)
    draw = ImageDraw.Draw(img)
    _, cjk = _font(round(5 * mm))
    words = _CJK if cjk else _LATIN
    left, right, y = 26 * mm, size[0] - 26 * mm, 30 * mm
    has_red = has_colour = False
    if kind == "sparse":
        blue = _draw_sparse(draw, rng, words, size, mm)
        return np.asarray(img).copy(), False, blue
    if kind == "red_heading":
        issuer = str(rng.choice(words["issuers"])) + ("文件" if cjk else "")
        font, _ = _font(round(13 * mm))
        draw.text((size[0] / 2, y), issuer, font=font, fill=_RED, anchor="mt")
        y += 22 * mm
        no = words["doc_no"].format(year=int(rng.integers(1985, 2020)), n=int(rng.integers(1, 60)))
        draw.text((size[0] / 2, y), no, font=_font(round(5 * mm))[0], fill=_INK, anchor="mt")
        y += 10 * mm
        draw.rectangle((left - 5 * mm, y, right + 5 * mm, y + 0.8 * mm), fill=_RED)
        y += 12 * mm
        has_red = has_colour = True
    heading = title or str(rng.choice(words["headings"]))
    draw.text((size[0] / 2, y), heading, font=_font(round(8 * mm))[0], fill=_INK, anchor="mt")
    y += 18 * mm
    if kind == "table":
        y, has_colour = _draw_table(draw, rng, words, left, right, y, mm)
    photo = None
    if kind == "photo":
        if rng.random() < 0.5:      # a 2-inch ID photo beside the form, as on a cadre resume form
            photo = (right - 35 * mm, y, 35 * mm, 45 * mm, True)
            y, _ = _draw_table(draw, rng, words, left, right - 40 * mm, y, mm)
            y = max(y, photo[1] + 53 * mm)
        else:                       # a photograph across the page, with a caption
            photo = (left, y, right - left, float(rng.uniform(70, 110)) * mm, False)
            y += photo[3] + 4 * mm
            caption = str(rng.choice(words["sentences"]))
            draw.text((size[0] / 2, y), caption, font=_font(round(4 * mm))[0], fill=_INK, anchor="mt")
            y += 12 * mm
    y = _draw_paragraphs(draw, rng, words, left, right, y, size[1] - 40 * mm, mm, cjk)
    page = np.asarray(img).copy()
    if photo:
        x0, y0, w, h, portrait = (round(v) for v in photo)
        picture, red = _photo(rng, w, h, bool(portrait))
        page[y0:y0 + h, x0:x0 + w] = picture
        has_colour, has_red = True, has_red or red
    if kind in ("seal", "red_heading") and (kind == "seal" or rng.random() < 0.6):
        cx = float(rng.uniform(right - 60 * mm, right - 30 * mm))
        cy = float(min(y + 10 * mm, size[1] - 50 * mm))
        _stamp_seal(page, rng, words, cx, cy, mm)
        has_red = has_colour = True
    return page, has_red, has_colour


def _draw_sparse(draw, rng, words, size, mm) -> bool:
    """A nearly empty side: only a page number, a short note (in blue ink), or a signature and date;
    True when it is the blue note."""
    name = str(rng.choice(words["names"]))
    date = f"{int(rng.integers(1985, 2020))}.{int(rng.integers(1, 13))}.{int(rng.integers(1, 29))}"
    choice = int(rng.integers(3))
    if choice == 0:
        draw.text((size[0] / 2, size[1] - 15 * mm), f"- {int(rng.integers(1, 40))} -",
                  font=_font(round(3.5 * mm))[0], fill=_INK, anchor="mb")
    elif choice == 1:
        x, y = float(rng.uniform(25, 90)) * mm, float(rng.uniform(60, 220)) * mm
        draw.text((x, y), f"同意。 {name} {date}", font=_font(round(5 * mm))[0], fill=_BLUE)
        return True
    else:
        x, y = size[0] - 95 * mm, size[1] - float(rng.uniform(40, 70)) * mm
        draw.text((x, y), f"本人签名：{name}", font=_font(round(5 * mm))[0], fill=_INK)
        draw.text((x, y + 9 * mm), date, font=_font(round(5 * mm))[0], fill=_INK)
    return False


def _photo(rng, w: int, h: int, portrait: bool) -> tuple[np.ndarray, bool]:
    """A photograph: an ID portrait on a blue, white or red backdrop, or a smooth colour scene; and if red."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if portrait:
        backdrop = str(rng.choice(list(_PHOTO_BACKDROPS)))
        img = np.empty((h, w, 3), np.float32)
        img[:] = _PHOTO_BACKDROPS[backdrop]
        img[((xx - w / 2) / (0.5 * w)) ** 2 + ((yy - 1.05 * h) / (0.32 * h)) ** 2 < 1] = (40, 42, 50)
        img[((xx - w / 2) / (0.22 * w)) ** 2 + ((yy - 0.45 * h) / (0.27 * h)) ** 2 < 1] = (225, 184, 160)
        hair = (((xx - w / 2) / (0.24 * w)) ** 2 + ((yy - 0.33 * h) / (0.2 * h)) ** 2 < 1) & (yy < 0.33 * h)
        img[hair] = (30, 25, 25)
        red = backdrop == "red"
    else:
        # A scene: light and shade over a few muted colours, as a print from a film camera looks.
        light = rng.uniform(40, 220, size=(6, 8, 1)) + rng.uniform(-30, 30, size=(6, 8, 3))
        img = cv2.resize(light.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
        red = False
    img += rng.normal(0, 6, size=(h, w, 1)).astype(np.float32)
    img = cv2.GaussianBlur(img, (0, 0), 1.0)
    return np.clip(img, 0, 255).astype(np.uint8), red


def _draw_table(draw, rng, words, left, right, y, mm) -> tuple[float, bool]:
    rows, cols = int(rng.integers(6, 11)), 4
    row_h, col_w = 11 * mm, (right - left) / cols
    blue = bool(rng.random() < 0.5)             # filled in by hand in blue ink on some forms
    font = _font(round(4.2 * mm))[0]
    line = max(1, round(0.3 * mm))
    for r in range(rows + 1):
        draw.line((left, y + r * row_h, right, y + r * row_h), fill=_INK, width=line)
    for c in range(cols + 1):
        draw.line((left + c * col_w, y, left + c * col_w, y + rows * row_h), fill=_INK, width=line)
    for r in range(rows):
        for c in range(cols):
            x, cy = left + c * col_w + 2 * mm, y + r * row_h + row_h / 2
            if c % 2 == 0:
                draw.text((x, cy), str(rng.choice(words["fields"])), font=font, fill=_INK, anchor="lm")
            else:
                value = str(rng.choice(words["names"] if r == 0 else words["values"]))
                draw.text((x, cy), value, font=font, fill=_BLUE if blue else _INK, anchor="lm")
    return y + rows * row_h + 12 * mm, blue


def _draw_paragraphs(draw, rng, words, left, right, y, bottom, mm, cjk) -> float:
    font = _font(round(5 * mm))[0]
    pitch = 9.5 * mm
    end = min(bottom, y + float(rng.uniform(0.35, 1.0)) * (bottom - y))
    while y + pitch < end:
        text = "".join(str(s) for s in rng.choice(words["sentences"], size=int(rng.integers(2, 6))))
        indent = 2 * font.size if cjk else 0
        line, x0 = "", left + indent
        for ch in text:
            if font.getlength(line + ch) > right - x0:
                draw.text((x0, y), line, font=font, fill=_INK)
                y += pitch
                line, x0 = "", left
                if y + pitch >= end:
                    return y
            line += ch
        if line:
            draw.text((x0, y), line, font=font, fill=_INK)
            y += pitch
        y += 0.5 * pitch                        # paragraph gap
    return y


def _stamp_seal(page: np.ndarray, rng, words, cx: float, cy: float, mm: float) -> None:
    """Stamp a round red official seal (ring, star, issuer around the top) over the page, like ink."""
    r = 21 * mm
    pad = round(r + 2 * mm)
    mask = Image.new("L", (2 * pad, 2 * pad), 0)
    d = ImageDraw.Draw(mask)
    d.ellipse((pad - r, pad - r, pad + r, pad + r), outline=255, width=max(2, round(1.2 * mm)))
    star = [(pad + (8 * mm if k % 2 == 0 else 3.1 * mm) * math.sin(math.radians(36 * k)),
             pad - (8 * mm if k % 2 == 0 else 3.1 * mm) * math.cos(math.radians(36 * k))) for k in range(10)]
    d.polygon(star, fill=255)
    issuer = str(rng.choice(words["issuers"]))
    font = _font(round(5 * mm))[0]
    span = 240.0
    for i, ch in enumerate(issuer):
        phi = -span / 2 + span * (i + 0.5) / len(issuer)
        glyph = Image.new("L", (round(7 * mm), round(7 * mm)), 0)
        ImageDraw.Draw(glyph).text((glyph.width / 2, glyph.height / 2), ch, font=font, fill=255, anchor="mm")
        glyph = glyph.rotate(-phi, resample=Image.Resampling.BICUBIC, expand=True)
        gx = pad + (r - 5 * mm) * math.sin(math.radians(phi)) - glyph.width / 2
        gy = pad - (r - 5 * mm) * math.cos(math.radians(phi)) - glyph.height / 2
        mask.paste(255, (round(gx), round(gy)), glyph)
    alpha = np.asarray(mask, dtype=np.float32) / 255 * float(rng.uniform(0.75, 0.95))
    x0, y0 = round(cx) - pad, round(cy) - pad
    region = page[y0:y0 + 2 * pad, x0:x0 + 2 * pad].astype(np.float32)
    alpha = alpha[:region.shape[0], :region.shape[1], None]
    ink = np.array(_RED, dtype=np.float32) / 255
    # Seal ink multiplies with what is under it: black text stays black through the red.
    page[y0:y0 + 2 * pad, x0:x0 + 2 * pad] = (region * (1 - alpha + alpha * ink)).astype(np.uint8)


def _bleed_through(front: np.ndarray, tone: float, strength: float, dpi: int) -> np.ndarray:
    """A blank back side showing the front's ink faintly, mirrored and blurred through the paper."""
    darkness = cv2.subtract(np.full(front.shape[:2], round(tone), np.uint8), cv2.cvtColor(front, cv2.COLOR_RGB2GRAY))
    darkness = cv2.GaussianBlur(cv2.flip(darkness, 1), (0, 0), 0.25 * dpi / 25.4)
    darkness = cv2.cvtColor(cv2.convertScaleAbs(darkness, alpha=strength), cv2.COLOR_GRAY2RGB)
    paper = np.empty_like(front)
    paper[:] = (round(tone), round(tone - 2), round(tone - 7))
    return cv2.subtract(paper, darkness)


def _specks(paper: np.ndarray, rng: np.random.Generator, dpi: int) -> None:
    """A few dust specks, as every scan has."""
    h, w = paper.shape[:2]
    for _ in range(int(rng.integers(2, 7))):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        radius = max(1, round(float(rng.uniform(0.05, 0.15)) * dpi / 25.4))
        cv2.circle(paper, (x, y), radius, (70, 70, 70), -1, lineType=cv2.LINE_AA)


def _punch(paper: np.ndarray, centres: list[tuple[float, float]], backing: int, dpi: int) -> None:
    """Punch 6 mm binding holes through which the scanner's backing shows."""
    for x, y in centres:
        cv2.circle(paper, (round(x), round(y)), round(3 * dpi / 25.4), (backing,) * 3, -1, cv2.LINE_AA)


def _place(paper: np.ndarray, angle: float, margins_px: np.ndarray, background: bool, tone: float,
           backing: int) -> tuple[np.ndarray, list[int]]:
    """Rotate the paper by ``angle`` (CCW) and lay it on the scanner's backing of grey level ``backing``.

    Returns the image and the paper's axis-aligned box after rotating the image back by ``-angle``
    about its centre, as the pipeline does.
    """
    hp, wp = paper.shape[:2]
    centre = ((wp - 1) / 2, (hp - 1) / 2)
    if not background:
        m = cv2.getRotationMatrix2D(centre, angle, 1.0)
        fill = (round(tone), round(tone - 2), round(tone - 7))
        return cv2.warpAffine(paper, m, (wp, hp), flags=cv2.INTER_LINEAR, borderValue=fill), [0, 0, wp, hp]
    a = math.radians(angle)
    bw = wp * abs(math.cos(a)) + hp * abs(math.sin(a))
    bh = wp * abs(math.sin(a)) + hp * abs(math.cos(a))
    left, top, right, bottom = margins_px
    w, h = math.ceil(bw + left + right), math.ceil(bh + top + bottom)
    cx, cy = left - 0.5 + bw / 2, top - 0.5 + bh / 2
    m = cv2.getRotationMatrix2D(centre, angle, 1.0)
    m[:, 2] += (cx - centre[0], cy - centre[1])
    image = cv2.warpAffine(paper, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=(backing,) * 3)
    back = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), -angle, 1.0)
    # The pipeline turns the image back onto a canvas that holds all of it, centred on the same point.
    back[:, 2] += ((math.ceil(round(w * abs(math.cos(a)) + h * abs(math.sin(a)), 6)) - w) / 2,
                   (math.ceil(round(w * abs(math.sin(a)) + h * abs(math.cos(a)), 6)) - h) / 2)
    px, py = back @ np.array([cx, cy, 1.0])
    return image, [round(px - centre[0]), round(py - centre[1]), wp, hp]


def _scanner_noise(image: np.ndarray, rng: np.random.Generator, dpi: int) -> np.ndarray:
    """Soften like scanner optics and add mild sensor noise (±4 grey levels)."""
    if dpi >= 200:
        image = cv2.GaussianBlur(image, (3, 3), 0.6)
    noise = cv2.cvtColor(rng.integers(0, 9, size=image.shape[:2], dtype=np.uint8), cv2.COLOR_GRAY2RGB)
    return cv2.subtract(cv2.add(image, noise), np.full_like(image, 4))
