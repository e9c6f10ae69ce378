import cv2
import numpy as np

from station.pipeline.imageio import planes, to_grey


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
