import io

import cv2
import numpy as np
import pytest
from PIL import Image

from station.capture.synthetic import render_page
from station.pipeline import PipelineConfig, process_page, read_image
from station.pipeline.encode import encode


@pytest.fixture(scope="module")
def text_page():
    return render_page(31, 0, dpi=150, kind="text")


@pytest.fixture(scope="module")
def seal_page():
    return render_page(31, 0, dpi=150, kind="seal")


def test_colour_jpeg_carries_the_scan_dpi(seal_page):
    out = process_page(seal_page.image, 150)
    image = Image.open(io.BytesIO(out.data))
    assert (image.format, image.mode, out.media_type, out.suffix) == ("JPEG", "RGB", "image/jpeg", ".jpg")
    assert image.info["jfif_unit"] == 1 and image.info["jfif_density"] == (150, 150)
    assert image.size == (out.width_px, out.height_px)
    assert out.record["codec"] == "jpeg" and out.record["bytes"] == len(out.data)


def test_grey_jpeg_is_one_channel_and_carries_the_dpi(text_page):
    out = process_page(text_page.image, 150)
    image = Image.open(io.BytesIO(out.data))
    assert (image.format, image.mode, len(image.getbands())) == ("JPEG", "L", 1)
    assert image.info["jfif_density"] == (150, 150)


def test_jpeg_quality_setting_changes_the_file(text_page):
    small = process_page(text_page.image, 150, PipelineConfig(jpeg_quality=40))
    large = process_page(text_page.image, 150, PipelineConfig(jpeg_quality=95))
    assert len(small.data) < len(large.data)


def test_bilevel_page_is_a_g4_tiff_with_the_dpi(text_page):
    out = process_page(text_page.image, 150, PipelineConfig(allow_bilevel=True))
    assert (out.colour, out.media_type, out.suffix, out.record["codec"]) == (
        "bilevel", "image/tiff", ".tif", "tiff-g4")
    image = Image.open(io.BytesIO(out.data))
    assert (image.format, image.mode) == ("TIFF", "1")
    assert image.info["compression"] == "group4"
    assert tuple(round(v) for v in image.info["dpi"]) == (150, 150)
    pixels = np.asarray(image.convert("L"))
    assert 0.01 < np.mean(pixels == 0) < 0.3          # black text on white, not a black page


@pytest.mark.parametrize("suffix, options", [
    (".jpg", {"format": "JPEG", "dpi": (200, 200)}),
    (".tif", {"format": "TIFF", "dpi": (400, 400), "compression": "tiff_lzw"}),
    (".png", {"format": "PNG", "dpi": (300, 300)}),
])
def test_read_image_gives_pixels_and_dpi(tmp_path, suffix, options):
    path = tmp_path / f"page{suffix}"
    Image.fromarray(np.full((40, 30, 3), (200, 10, 10), np.uint8)).save(path, **options)
    image, dpi = read_image(path)
    assert image.shape == (40, 30, 3) and image.dtype == np.uint8
    assert dpi == options["dpi"][0]


def test_read_image_without_dpi_and_in_grey(tmp_path):
    path = tmp_path / "page.png"
    Image.fromarray(np.zeros((20, 10), np.uint8)).save(path)
    image, dpi = read_image(path)
    assert image.shape == (20, 10) and dpi is None


def test_processed_file_reads_back(tmp_path, seal_page):
    out = process_page(seal_page.image, 150)
    path = tmp_path / f"page{out.suffix}"
    path.write_bytes(out.data)
    image, dpi = read_image(path)
    assert image.shape == (out.height_px, out.width_px, 3) and dpi == 150


def test_rgbx_page_encodes_exactly_as_its_rgb(seal_page):
    rgb = np.ascontiguousarray(seal_page.image[:301, :203])
    rgbx = np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])
    for mode in ("colour", "grey", "bilevel"):
        assert encode(rgbx, mode, 150, 85).data == encode(rgb, mode, 150, 85).data


@pytest.mark.parametrize("quality", [85, 40, 95])
def test_grey_jpeg_is_the_file_pillow_writes_with_the_dpi(text_page, quality):
    # The grey encoder is OpenCV's (the faster one here) with the resolution written into its JFIF
    # header: byte for byte the file Pillow writes for the same pixels and settings.
    grey = np.ascontiguousarray(text_page.image[5:-7, 3:-2, 1])
    out = encode(grey, "grey", 150, quality)
    pillow = io.BytesIO()
    Image.fromarray(grey).save(pillow, format="JPEG", quality=quality, dpi=(150, 150))
    assert out.data == pillow.getvalue()
    image = Image.open(io.BytesIO(out.data))
    assert (image.info["jfif_unit"], image.info["jfif_density"], image.size) == (1, (150, 150), grey.shape[::-1])


def test_grey_jpeg_falls_back_to_pillow_when_opencv_writes_another_header(text_page, monkeypatch):
    # Should OpenCV's JPEG header ever change (an EXIF block first, another JFIF version), the resolution
    # is not patched into bytes it does not know: Pillow writes the file.
    grey = np.ascontiguousarray(text_page.image[..., 1])
    real = cv2.imencode
    monkeypatch.setattr(cv2, "imencode", lambda ext, img, params: (True, np.frombuffer(
        b"\xff\xd8\xff\xe1" + real(ext, img, params)[1].tobytes()[4:], np.uint8)))
    pillow = io.BytesIO()
    Image.fromarray(grey).save(pillow, format="JPEG", quality=85, dpi=(300, 300))
    assert encode(grey, "grey", 300, 85).data == pillow.getvalue()


@pytest.mark.parametrize("quality", [85, 40, 95])
def test_bgrx_colour_jpeg_is_the_file_pillow_writes_for_its_rgb(seal_page, quality):
    # The pipeline hands colour pages over in OpenCV's order, which OpenCV encodes as it is: byte for
    # byte the file Pillow writes for the RGB pixels (4:2:0 chroma, same tables), with the dpi.
    rgb = np.ascontiguousarray(seal_page.image[4:-5, 2:-3])
    bgrx = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA)
    pillow = io.BytesIO()
    Image.fromarray(rgb).save(pillow, format="JPEG", quality=quality, dpi=(150, 150))
    assert encode(bgrx, "colour", 150, quality, bgr=True).data == pillow.getvalue()
    assert encode(bgrx[..., :3], "colour", 150, quality, bgr=True).data == pillow.getvalue()


def test_bgr_pages_in_every_mode_encode_as_their_rgb(seal_page, monkeypatch):
    rgb = np.ascontiguousarray(seal_page.image[:301, :203])
    bgrx = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA)
    for mode in ("colour", "grey", "bilevel"):
        assert encode(bgrx, mode, 150, 85, bgr=True).data == encode(rgb, mode, 150, 85).data
    # Should OpenCV's header ever change, Pillow writes the colour file from the BGRX pixels, not mixed up.
    real = cv2.imencode
    monkeypatch.setattr(cv2, "imencode", lambda ext, img, params: (True, np.frombuffer(
        b"\xff\xd8\xff\xe1" + real(ext, img, params)[1].tobytes()[4:], np.uint8)))
    pillow = io.BytesIO()
    Image.fromarray(rgb).save(pillow, format="JPEG", quality=85, dpi=(150, 150))
    assert encode(bgrx, "colour", 150, 85, bgr=True).data == pillow.getvalue()
