import cv2
import numpy as np

from station.pipeline.imageio import downscale, planes, to_grey


def test_planes_are_the_channels_each_in_its_own_contiguous_array():
    image = np.random.default_rng(3).integers(0, 256, (37, 1998, 3), np.uint8)
    view = image[5:30, 11:1990]
    found = planes(view)
    assert len(found) == 3
    for i, plane in enumerate(found):
        assert plane.flags["C_CONTIGUOUS"] and np.array_equal(plane, view[..., i])


def test_grey_of_rgbx_is_grey_of_its_rgb_and_grey_stays_as_it_is():
    rgb = np.random.default_rng(4).integers(0, 256, (20, 30, 3), np.uint8)
    grey = to_grey(rgb)
    assert grey.shape == (20, 30) and np.array_equal(to_grey(cv2.cvtColor(rgb, cv2.COLOR_RGB2RGBA)), grey)
    assert to_grey(grey) is grey


def test_a_200_dpi_page_is_analysed_on_a_150_dpi_copy_and_a_189_dpi_one_as_it_is():
    # Analysed at its own size a 200-dpi page cost nearly twice a 300-dpi one (issue 13's speed bar).
    image = np.random.default_rng(5).integers(0, 256, (2339, 1654, 3), np.uint8)
    small, scale = downscale(image, 200, 150)
    assert scale == 0.75 and small.shape == (2337 // 4 * 3, 1652 // 4 * 3, 3)
    # Each pixel of the copy averages 4/3 × 4/3 of the page's: the copy's mean is the page's, its corner the corner's.
    kept = image[:2336, :1652].astype(np.float64)
    assert abs(small.mean() - kept.mean()) < 0.5
    assert abs(float(small[0, 0, 0]) - (kept[0, 0, 0] + kept[0, 1, 0] / 3 + kept[1, 0, 0] / 3 + kept[1, 1, 0] / 9)
               / (16 / 9)) <= 1
    assert downscale(image, 189, 150)[0] is image
    assert downscale(image, 300, 150)[1] == 0.5


def test_the_three_quarter_copy_is_pixel_for_pixel_opencvs_area_average():
    # The analysis decides on these pixels: a faster way to the copy must not move one of them.
    rng = np.random.default_rng(6)
    page = rng.integers(0, 256, (1103, 862, 3), np.uint8)
    for image in (page, page[1:, 3:], page[:, :, 1], to_grey(page)[:17, :9], page[:300, :5]):
        h, w = image.shape[:2]
        small, scale = downscale(image, 220, 150)
        area = cv2.resize(image[:h // 4 * 4, :w // 4 * 4], (w // 4 * 3, h // 4 * 3), interpolation=cv2.INTER_AREA)
        assert scale == 0.75 and small.dtype == np.uint8 and np.array_equal(small, area), image.shape
