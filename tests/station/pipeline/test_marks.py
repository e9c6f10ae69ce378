import cv2
import numpy as np

from station.pipeline import process_page
from station.pipeline.imageio import component_boxes


def _speckled(h: int, w: int, pitch: int, dot: int) -> np.ndarray:
    """A white page covered edge to edge by separate square dots of ``dot`` pixels, one every ``pitch`` pixels."""
    page = np.full((h, w), 240, np.uint8)
    for dy in range(dot):
        for dx in range(dot):
            page[pitch // 2 + dy::pitch, pitch // 2 + dx::pitch] = 20
    return page


def test_every_mark_is_counted_where_there_are_more_than_65535():
    # A dithered photocopy or a speckled scan at 150 dpi: more marks than 16-bit labels can count.
    binary = (_speckled(1754, 1240, 5, 2) < 100).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    assert count - 1 > 65535
    assert np.array_equal(component_boxes(binary), stats[1:])


def test_marks_are_the_same_with_fewer():
    binary = (_speckled(1754, 1240, 9, 3) < 100).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    assert 1000 < count - 1 <= 65535
    assert np.array_equal(component_boxes(binary), stats[1:])


def test_a_speckled_page_is_processed_and_not_blank():
    out = process_page(_speckled(3508, 2480, 12, 6), 300)
    assert not out.record["blank"]
    assert out.record["blank_score"] > 5
