"""Directories (目录): imported from CSV or Excel as scanning rooms keep them, or fetched from the archive."""

import csv
import datetime as dt
import json

import openpyxl
import pytest

from station import directory
from station.capture.synthetic import SyntheticSource
from station.cli import main
from station.errors import StationError, UsageError
from station.scan import scan
from station.sync import sync
from tests.conftest import make_station, register

ROWS = [("1-1", "干部履历表", "1998-07", "4", ""), ("2-1", "自传", "1985.03.02", "6", "手写"),
        ("4-1-1", "大学毕业登记表", "19880701", "2", "")]


@pytest.fixture
def st(tmp_path):
    station = make_station(tmp_path / "st", dpi=150)
    yield station
    station.close()


def _write_csv(path, encoding: str, header=("类号", "材料名称", "形成时间", "页数", "备注"), rows=ROWS, above=()):
    with open(path, "w", encoding=encoding, newline="") as fh:
        writer = csv.writer(fh)
        for line in above:
            writer.writerow(line)
        writer.writerow(header)
        writer.writerows(rows)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030"])
def test_a_csv_directory_in_any_of_the_encodings_excel_writes_is_imported(st, tmp_path, encoding, capsys):
    path = tmp_path / "目录.csv"
    _write_csv(path, encoding, above=[("干部档案目录",), ("姓名：张三",)])
    assert main(["--home", str(st.config.home), "directory", "import", str(path), "--dossier", "D-0001"]) == 0
    assert "D-0001: directory of 3 material(s) imported" in capsys.readouterr().out
    assert [(e["item"], e["title"], e["date_formed"], e["pages"], e["remarks"])
            for e in st.store.directory("D-0001")] == [
        ("1-1", "干部履历表", "1998-07", 4, None), ("2-1", "自传", "1985-03-02", 6, "手写"),
        ("4-1-1", "大学毕业登记表", "1988-07-01", 2, None)]


def test_an_xlsx_directory_of_several_dossiers_with_category_and_number_columns(st, tmp_path, capsys):
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["档号", "类号", "序号", "材料名称", "形成时间", "页数", "备注"])
    sheet.append(["D-0002", 1, 1, "干部履历表", dt.datetime(1998, 7, 1), 4, None])
    sheet.append(["D-0002", "4-1", 2, "学位证书", "2001年6月", 1.0, "复印件"])
    sheet.append([None] * 7)
    sheet.append(["D-0003", 9, None, "任免审批表", 2010, 3, None])    # 类号 9 without a sub-category: wrong
    path = tmp_path / "目录.xlsx"
    book.save(path)
    with pytest.raises(directory.DirectoryError) as refused:
        directory.import_file(st, path)
    assert "row 5, column 类号: material item '9' is not of the form 类-序" in str(refused.value)
    assert st.store.directory("D-0002") == []        # nothing of the file was kept

    sheet["B5"], sheet["C5"] = "9-2", 1
    book.save(path)
    assert main(["--home", str(st.config.home), "directory", "import", str(path)]) == 0
    assert [(e["item"], e["date_formed"], e["pages"], e["remarks"]) for e in st.store.directory("D-0002")] == [
        ("1-1", "1998-07-01", 4, None), ("4-1-2", "2001-06", 1, "复印件")]
    assert [e["item"] for e in st.store.directory("D-0003")] == ["9-2-1"]


def test_every_bad_cell_is_named_by_row_and_column_and_nothing_is_imported(st, tmp_path):
    good = tmp_path / "good.csv"
    _write_csv(good, "utf-8", header=("档号", "类号", "材料名称", "形成时间", "页数", "备注"),
               rows=[("D-0004", "1-1", "干部履历表", "1998", "4", "")])
    directory.import_file(st, good)
    bad = tmp_path / "bad.csv"
    _write_csv(bad, "utf-8", header=("档号", "类号", "材料名称", "形成时间", "页数", "备注"), rows=[
        ("D-0004", "1-1", "干部履历表", "1998-13", "4", ""),
        ("D-0004", "2-1", "", "1999", "十二", ""),
        ("D-0004", "11-1", "其他", "", "0", ""),
        ("D-0004", "3-1", "考核表", "2000", "2", ""),
        ("D-0004", "3-1", "考核表", "2001", "2", ""),
    ])
    with pytest.raises(directory.DirectoryError) as refused:
        directory.import_file(st, bad)
    message = str(refused.value)
    assert message.startswith("bad.csv: nothing was imported; correct the file and import it again")
    for expected in ["row 2, column 形成时间: '1998-13' is not a date; write it as YYYY-MM-DD",
                     "row 3, column 材料名称: the material's title is empty",
                     "row 3, column 页数: '十二' is not a whole number of pages; write the material's page count "
                     "as a number, e.g. 12",
                     "row 4, column 类号: material item '11-1': category 11 is not one of the ten",
                     "row 4, column 页数: 0 pages; a material has at least one page",
                     "row 6: material 3-1 of D-0004 is listed twice (row 5 too)"]:
        assert expected in message
    assert [e["item"] for e in st.store.directory("D-0004")] == ["1-1"]       # the directory it had, unchanged


def test_a_file_without_the_headings_or_the_dossier_says_what_is_missing(st, tmp_path):
    path = tmp_path / "x.csv"
    _write_csv(path, "utf-8", header=("编号", "名称", "张数"))
    with pytest.raises(directory.DirectoryError, match="no heading row with the columns 类号, 材料名称, 页数"):
        directory.import_file(st, path)
    _write_csv(path, "utf-8")
    with pytest.raises(directory.DirectoryError, match="no 档号 column; give the dossier's archive number with "
                                                         "--dossier"):
        directory.import_file(st, path)
    (tmp_path / "old.xls").write_bytes(b"\xd0\xcf\x11\xe0")
    with pytest.raises(UsageError, match="save it as .xlsx or CSV"):
        directory.import_file(st, tmp_path / "old.xls")


def test_show_lists_the_directory_beside_what_is_scanned(st, tmp_path, capsys):
    st.store.replace_directory("D-0005", [{"item": "1-1", "title": "干部履历表", "pages": 2},
                                          {"item": "2-1", "title": "自传", "pages": 5}], "file 目录.csv")
    scan(st, {"archive_no": "D-0005"}, {"item": "1-1", "title": "干部履历表"},
         SyntheticSource(seed=1, sheets=2, dpi=150, duplex=False))
    assert main(["--home", str(st.config.home), "directory", "show", "D-0005"]) == 0
    out = capsys.readouterr().out
    assert "1-1      干部履历表  -  2 页  (2 scanned, sealed)" in out
    assert "2-1      自传  -  5 页  (not scanned)" in out
    with pytest.raises(StationError, match="6 pages scanned \\(3 flagged blank\\) but the directory lists 5"):
        scan(st, {"archive_no": "D-0005"}, {"item": "2-1", "title": "自传"}, SyntheticSource(seed=2, sheets=3, dpi=150))
    assert main(["--home", str(st.config.home), "directory", "show", "D-0005"]) == 0
    assert "2-1      自传  -  5 页  (6 scanned (3 flagged blank), review — DIFFERS from the directory's 5)" in (
        capsys.readouterr().out)


def test_fetch_takes_the_archives_catalogue_for_a_dossier_of_the_stations_unit_only(tmp_path, central, capsys):
    archive, address = central
    scanner = register(archive, address, make_station(tmp_path / "a", address, "st-a", dpi=150))
    try:
        for item, title, sheets in (("2-1", "自传", 1), ("1-1", "干部履历表", 2)):
            scan(scanner, {"archive_no": "D-0100"}, {"item": item, "title": title, "date_formed": "1999-01"},
                 SyntheticSource(seed=3, sheets=sheets, dpi=150, duplex=False))
        sync(scanner)
    finally:
        scanner.close()
    same_unit = register(archive, address, make_station(tmp_path / "b", address, "st-b"))
    other_unit = register(archive, address, make_station(tmp_path / "c", address, "st-c"), unit="unit-b")
    try:
        assert main(["--home", str(same_unit.config.home), "directory", "fetch", "D-0100"]) == 0
        assert "D-0100: directory of 2 material(s) taken from the archive's catalogue" in capsys.readouterr().out
        assert [(e["item"], e["title"], e["date_formed"], e["pages"], e["source"])
                for e in same_unit.store.directory("D-0100")] == [
            ("1-1", "干部履历表", "1999-01", 2, f"archive {address}"), ("2-1", "自传", "1999-01", 1, f"archive {address}")]

        # Another unit's dossier is answered as one the archive does not hold.
        with pytest.raises(UsageError) as theirs:
            directory.fetch(other_unit, "D-0100")
        with pytest.raises(UsageError) as absent:
            directory.fetch(other_unit, "D-0199")
        assert str(theirs.value).replace("D-0100", "D") == str(absent.value).replace("D-0199", "D")
        assert "has no dossier D-0100 of unit unit-b" in str(theirs.value)
        assert other_unit.store.directory("D-0100") == []
    finally:
        same_unit.close()
        other_unit.close()


def test_scan_takes_the_title_from_the_directory_and_seals_when_the_count_matches(st, tmp_path, capsys):
    path = tmp_path / "目录.csv"
    _write_csv(path, "utf-8", rows=[("2-1", "自传", "1985.03.02", "2", "手写")])
    home = str(st.config.home)
    assert main(["--home", home, "directory", "import", str(path), "--dossier", "D-0006"]) == 0
    assert main(["--home", home, "scan", "--dossier", "D-0006", "--material", "2-1",
                 "--source", "synthetic:seed=5,sheets=2,duplex=no"]) == 0
    assert "sealed as bundle" in capsys.readouterr().err
    bundle = st.store.db.execute("SELECT manifest FROM bundles").fetchone()[0]
    manifest = json.loads(bundle)
    assert manifest["material"] == {"item": "2-1", "title": "自传", "date_formed": "1985-03-02", "remarks": "手写",
                                    "page_count": 2}
    assert manifest["count_check"] == {"expected": 2, "found": 2, "blank": 0, "source": "file 目录.csv"}


def test_a_material_typed_in_is_checked_like_a_row_and_corrected_in_its_place(st, capsys):
    home = str(st.config.home)
    assert main(["--home", home, "directory", "add", "D-0007", "1-1", "--title", "干部履历表", "--pages", "3"]) == 0
    assert main(["--home", home, "directory", "add", "D-0007", "2-1", "--title", "自传", "--pages", "2",
                 "--date-formed", "1990年5月"]) == 0
    assert main(["--home", home, "directory", "add", "D-0007", "1-1", "--title", "干部履历表", "--pages", "4"]) == 0
    capsys.readouterr()
    assert main(["--home", home, "directory", "add", "D-0007", "4-1", "--title", "", "--pages", "两页"]) == 2
    err = capsys.readouterr().err
    assert "D-0007 4-1: not kept in the directory; correct it and try again" in err
    assert "类号: material item '4-1': category 4 is divided into 4-1…4-4; write e.g. 4-1-1" in err
    assert "页数: '两页' is not a whole number of pages" in err and "材料名称: the material's title is empty" in err
    assert [(e["item"], e["pages"], e["date_formed"], e["source"]) for e in st.store.directory("D-0007")] == [
        ("1-1", 4, None, "typed"), ("2-1", 2, "1990-05", "typed")]


def test_the_printed_form_with_year_month_and_day_under_its_date_heading_saved_as_unicode_text(st, tmp_path):
    """Excel's "Unicode text" (UTF-16, tab-separated) of the 干部档案目录 form: 材料形成时间 over 年 月 日."""
    lines = ["干部档案目录\t\t\t\t\t\t",
             "类号\t材料名称\t材料形成时间\t\t\t页数（页）\t备注",
             "\t\t年\t月\t日\t\t",
             "1-1\t干部履历表\t1998\t7\t\t4\t",
             "2-1\t自传\t1985\t3\t2\t6\t手写",
             "4-1-1\t大学毕业登记表\t1988\t\t\t2\t"]
    path = tmp_path / "目录.txt"
    path.write_bytes("\r\n".join(lines).encode("utf-16"))
    directory.import_file(st, path, "D-0008")
    assert [(e["item"], e["date_formed"], e["pages"], e["remarks"]) for e in st.store.directory("D-0008")] == [
        ("1-1", "1998-07", 4, None), ("2-1", "1985-03-02", 6, "手写"), ("4-1-1", "1988", 2, None)]

    lines[4] = "2-1\t自传\t1985\t13\t2\t6\t手写"
    lines[5] = "4-1-1\t大学毕业登记表\t\t5\t\t2\t"
    path.write_bytes("\r\n".join(lines).encode("utf-16"))
    with pytest.raises(directory.DirectoryError) as refused:
        directory.import_file(st, path, "D-0008")
    assert "row 5, column 材料形成时间: '1985-13-2' is not a date" in str(refused.value)
    assert "row 6, column 年: empty while 月 or 日 is filled; write the year" in str(refused.value)
