import io

import numpy as np
import pytest
from PIL import Image

from station.capture.synthetic import render_page
from station.pipeline import PipelineConfig, process_page

BILEVEL = PipelineConfig(allow_bilevel=True)


@pytest.fixture(scope="module")
def pages():
    kinds = {kind: render_page(21, 0, dpi=150, kind=kind) for kind in ("text", "seal", "red_heading")}
    kinds["back"] = render_page(21, 1, dpi=150, kind="text")
    kinds["blue form"] = next(p for p in (render_page(s, 0, dpi=150, kind="table") for s in range(20))
                              if p.truth["has_colour"])
    return kinds


def _mode(out):
    return Image.open(io.BytesIO(out.data)).mode


@pytest.mark.parametrize("kind", ["seal", "red_heading"])
def test_red_seal_or_heading_keeps_the_page_in_colour(pages, kind):
    out = process_page(pages[kind].image, 150)
    assert out.colour == "colour" and _mode(out) == "RGB"
    assert out.record["colour_reason"].startswith("red content (seal/heading)")


def test_blue_ink_keeps_the_page_in_colour(pages):
    out = process_page(pages["blue form"].image, 150)
    assert out.colour == "colour" and "blue content" in out.record["colour_reason"]


def test_black_text_goes_grey_under_auto(pages):
    out = process_page(pages["text"].image, 150)
    assert out.colour == "grey" and _mode(out) == "L"
    assert out.record["colour_reason"] == "no colour content; policy auto → grey"


def test_yellowed_paper_is_not_colour_content(pages):
    aged = (pages["text"].image * np.array([1.0, 0.93, 0.75])).astype(np.uint8)
    assert process_page(aged, 150).colour == "grey"


def test_policy_colour_keeps_every_page_in_colour(pages):
    for page in pages.values():
        out = process_page(page.image, 150, PipelineConfig(colour_policy="colour"))
        assert out.colour == "colour" and _mode(out) == "RGB"
        assert out.record["colour_reason"] == "policy: always colour"


def test_bilevel_only_for_clean_black_text_and_only_when_allowed(pages):
    assert process_page(pages["text"].image, 150).colour == "grey"
    assert process_page(pages["text"].image, 150, BILEVEL).colour == "bilevel"
    assert process_page(pages["seal"].image, 150, BILEVEL).colour == "colour"
    # Bleed-through is grey shading that bilevel would wipe out or turn into specks.
    assert process_page(pages["back"].image, 150, BILEVEL).colour == "grey"


def test_policy_must_be_known():
    with pytest.raises(ValueError, match="colour_policy"):
        PipelineConfig(colour_policy="bw")


def test_a_mostly_red_page_stays_colour(pages):
    cover = pages["text"].image.copy()
    h, w = cover.shape[:2]
    cover[h // 20:19 * h // 20, w // 20:19 * w // 20] = (190, 30, 35)   # a red certificate cover
    out = process_page(cover, 150)
    assert out.colour == "colour" and out.record["colour_reason"].startswith("red content")
