import cv2
import numpy as np

from station.pipeline import marks, process_page
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


def _faded_lines(h: int, w: int) -> np.ndarray:
    """Thin print 17 % darker than its paper (a worn ribbon), in lines that cross many strips of rows."""
    page = np.full((h, w), 240, np.uint8)
    for row, y in enumerate(range(256 + 10, h - 100, 128)):      # baselines just past each strip's edge
        cv2.putText(page, f"Facture {56818 + row}  15/10/2010  {row * 39.5:8.2f}", (120 + 7 * row, y),
                    cv2.FONT_HERSHEY_SIMPLEX, 1.1, 200, 2, cv2.LINE_AA)
    return cv2.GaussianBlur(page, (3, 3), 0.6)


def test_faint_print_is_found_the_same_across_the_strips_it_is_looked_at_in(monkeypatch):
    # The second look at full size goes strip by strip; print crossing a strip's edge is judged as if
    # the page were looked at whole.
    page = _faded_lines(1748, 1240)
    by_strips = process_page(page, 300).record
    monkeypatch.setattr(marks, "STRIP_ROWS", 10 ** 6)
    whole = process_page(page, 300).record
    assert not by_strips["blank"]
    assert by_strips["blank_score"] == whole["blank_score"]


def test_a_sheet_with_nothing_faint_on_it_is_not_turned_for_a_second_look():
    # Most blank backs: nothing on the full-size sheet is faint and sharp, so there is no mark to map
    # onto the analysis view, and the view is not turned and cut again for it.
    page = np.full((1748, 1240), 238, np.uint8)
    for y in range(300, 1500, 90):       # print on the other side, seen through the sheet: blurred and faint
        cv2.putText(page, "Facture 56818  15/10/2010", (150, y), cv2.FONT_HERSHEY_SIMPLEX, 1.4, 180, 3)
    page = cv2.GaussianBlur(page, (0, 0), 6)

    def no_turn(grid):
        raise AssertionError("the faint look turned a copy of a sheet with nothing faint on it")

    view = cv2.resize(page, (620, 874), interpolation=cv2.INTER_AREA)
    found = marks.find_faint_marks(page, 0.5, view, (0, 0, 620, 874), 150 / 25.4, no_turn)
    assert found.boxes.shape == (0, 5) and not found.covered
    assert found.region == marks.find_marks(view, (0, 0, 620, 874), 150 / 25.4).region



def _fine_pen_note(h: int, w: int) -> np.ndarray:
    """A 100-dpi scan of a note in a fine pen: strokes one pixel (0.25 mm) wide, dark on white."""
    page = np.full((h, w), 235, np.uint8)
    xs = np.arange(120, w - 120)
    for y in range(160, 560, 40):
        # Handwriting as a wavering line broken into words.
        ys = (y + 6 * np.sin(xs / 7.0)).astype(np.int32)
        keep = (xs // 60) % 5 != 4
        for x0, x1, y0, y1 in zip(xs[:-1][keep[:-1]], xs[1:][keep[:-1]], ys[:-1][keep[:-1]], ys[1:][keep[:-1]]):
            cv2.line(page, (int(x0), int(y0)), (int(x1), int(y1)), 40, 1)
    return page


def test_a_low_resolution_page_in_a_fine_pen_is_not_called_blank():
    # A page below 200 dpi is analysed at its own size: its marks are judged in mm, not in pixels
    # sized for 150 dpi (a 2-pixel speck filter there erased every 0.25 mm stroke, and the note was blank).
    out = process_page(_fine_pen_note(1169, 827), 100)
    assert not out.record["blank"]
    assert out.record["blank_score"] > 0.1
