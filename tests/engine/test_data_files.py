"""Data files as a new user writes them: delimiters, headers, label columns by name, class
names, real-valued targets, and every bad field reported with its file, row and column."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from topograd.engine.data.datasets import (
    DataError,
    Dataset,
    load_csv,
    load_dataset,
    load_npz,
    split,
)


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- reading -------------------------------------------------------------------------------------
def test_a_semicolon_file_with_the_label_named_by_its_header(tmp_path):
    path = write(tmp_path, "houses.csv", "price;area;rooms\n250.5;120;4\n99;60.5;2\n")
    data = load_csv(path, label_column="price", delimiter=";", target="real")
    assert data.x.tolist() == [[120, 4], [60.5, 2]]
    assert data.y.dtype == np.float64 and data.y.tolist() == [250.5, 99]
    assert data.classes == [] and data.regression and data.num_classes == 0


def test_label_columns_count_as_python_indexes(tmp_path):
    path = write(tmp_path, "t.csv", "1,2,3\n4,5,6\n")
    assert load_csv(path, label_column=0, target="real").y.tolist() == [1, 4]
    assert load_csv(path, label_column=-2, target="real").x.tolist() == [[1, 3], [4, 6]]
    with pytest.raises(DataError, match=r"t\.csv: label column 3 is outside the 3 columns"):
        load_csv(path, label_column=3)


def test_class_names_are_indexed_in_sorted_order_and_kept(tmp_path):
    path = write(tmp_path, "pets.csv", 'w,h,animal\n4,25,"dog"\n3.5,20,cat\n30,60,dog\n1,9,bird\n')
    data = load_csv(path)
    assert data.classes == ["bird", "cat", "dog"]
    assert data.y.tolist() == [2, 1, 2, 0]
    tabs = write(tmp_path, "pets.tsv.csv", "w\th\tanimal\n4\t25\tdog\n3.5\t20\tcat\n")
    assert load_csv(tabs, delimiter="\t").classes == ["cat", "dog"]


def test_gzipped_files_take_the_same_options(tmp_path):
    path = tmp_path / "r.csv.gz"
    path.write_bytes(gzip.compress(b"y;a\n0.5;1\n1.5;2\n"))
    data = load_dataset(str(path), label_column=0, delimiter=";", target="real")
    assert data.y.tolist() == [0.5, 1.5] and data.x.tolist() == [[1], [2]]


def test_a_header_is_a_first_row_without_any_number(tmp_path):
    named = write(tmp_path, "named.csv", "a,b,label\n1,2,0\n3,4,1\n")
    assert len(load_csv(named)) == 2
    numbers = write(tmp_path, "numbers.csv", "1,2,0\n3,4,1\n")
    assert len(load_csv(numbers)) == 2
    forced = write(tmp_path, "forced.csv", "2020,2021,label\n1,2,0\n3,4,1\n")
    assert len(load_csv(forced, header=True)) == 2


def test_a_typo_in_the_first_row_is_reported_not_taken_for_a_header(tmp_path):
    path = write(tmp_path, "typo.csv", "0.1,O.5,1\n0.2,0.3,0\n0.4,0.1,1\n")
    with pytest.raises(DataError) as error:
        load_csv(path)
    message = str(error.value)
    assert message.startswith(f"{path}: row 1, column 2: value 'O.5' is not a finite number")
    assert "row 1 is data, not a header" in message


def test_a_typo_further_down_names_the_row_the_column_and_its_header(tmp_path):
    path = write(tmp_path, "mid.csv", "a,b,label\n1,2,0\n\n3,x4,1\n")
    with pytest.raises(DataError, match=r"mid\.csv: row 4, column 2: value 'x4' .*\(column 'b'\)"):
        load_csv(path)


@pytest.mark.parametrize(
    ("text", "options", "message"),
    [
        ("a;b;c\n1;2;0\n", {}, r"row 2 has 1 column.*holds ';'.*delimiter=\";\""),
        ("a,b,c\n1,2,0\n3,4\n", {}, r"row 3 has 2 columns, expected 3 \(as in row 1\)"),
        ("a,b,c\n1,2,0\n", {"label_column": "C"}, r"no column named 'C' in the header \(a, b, c\)"),
        (
            "1,2,0\n",
            {"label_column": "c"},
            r"label column 'c' is a name, but the file has no header",
        ),
        ("1,2,0\n3,4,cat\n", {}, r"row 2, column 3: label 'cat' is not a number, but row 1's"),
        ("a,b,c\n1,2,cat\n3,4,7\n", {}, r"row 3, column 3: label '7' is a number, but row 2's"),
        ("1,2,0\n3,4,0.5\n", {}, r"row 2, column 3: label '0.5' is not an integer.*regression"),
        ("1,2,dog\n3,4,\n", {}, r"row 2, column 3: the label is empty"),
        (
            "1,2,0.5\n3,4,nan\n",
            {"target": "real"},
            r"row 2, column 3: target 'nan' is not a finite",
        ),
        ("1,2,0\n3,,1\n", {}, r"row 2, column 2: value '' is not a finite number"),
        ('1,2,"0\n3,4,1\n', {}, r"bad\.csv: row 1: unexpected end of data"),
    ],
)
def test_bad_files_are_reported_with_file_row_and_column(tmp_path, text, options, message):
    path = write(tmp_path, "bad.csv", text)
    with pytest.raises(DataError, match=message):
        load_csv(path, **options)


def test_options_are_checked():
    with pytest.raises(ValueError, match="delimiter must be one character"):
        load_csv("unused.csv", delimiter=";;")
    with pytest.raises(ValueError, match="target must be 'class' or 'real'"):
        load_csv("unused.csv", target="regression")


def test_spreadsheet_blank_rows_are_skipped_but_counted(tmp_path):
    path = write(tmp_path, "sheet.csv", "a,b,label\n1,2,0\n,,\n3,4,1\n\n3,y,1\n")
    with pytest.raises(DataError, match=r"row 6, column 2"):
        load_csv(path)


# --- archives ------------------------------------------------------------------------------------
def test_npz_with_names_or_real_targets(tmp_path):
    x = np.arange(8.0).reshape(4, 2)
    np.savez(tmp_path / "named.npz", x=x, y=np.array(["dog", "cat", "dog", "ant"]))
    named = load_npz(tmp_path / "named.npz")
    assert named.classes == ["ant", "cat", "dog"] and named.y.tolist() == [2, 1, 2, 0]
    np.savez(tmp_path / "real.npz", features=x, price=np.array([0.5, 1.5, 2.0, -1.0]))
    real = load_npz(tmp_path / "real.npz", x_key="features", y_key="price", target="real")
    assert real.regression and real.y.tolist() == [0.5, 1.5, 2.0, -1.0]
    with pytest.raises(DataError, match=r"real\.npz: 'price' labels must be integers or names"):
        load_npz(tmp_path / "real.npz", x_key="features", y_key="price")
    np.savez(tmp_path / "nan.npz", x=x, y=np.array([0.5, np.nan, 2.0, 1.0]))
    with pytest.raises(DataError, match=r"nan\.npz: 'y' target 1 is nan"):
        load_npz(tmp_path / "nan.npz", target="real")


# --- real-valued targets in the rest of the kit --------------------------------------------------
def test_real_targets_split_without_strata_and_keep_their_values():
    rng = np.random.default_rng(0)
    data = Dataset(rng.normal(size=(100, 3)), rng.normal(size=100), "r", [])
    parts = split(data, val=0.2, test=0.1, seed=1)  # stratify=True is ignored: no classes
    assert (len(parts.train), len(parts.val), len(parts.test)) == (70, 20, 10)
    joined = np.sort(np.concatenate([parts.train.y, parts.val.y, parts.test.y]))
    np.testing.assert_array_equal(joined, np.sort(data.y))
    assert parts.val.regression and parts.val.y.dtype == np.float64


def test_a_dataset_of_classes_still_refuses_real_labels():
    with pytest.raises(ValueError, match="labels must be integers"):
        Dataset(np.zeros((2, 1)), np.array([0.5, 1.0]), "d", ["a", "b"])
    with pytest.raises(ValueError, match="targets must be numbers"):
        Dataset(np.zeros((2, 1)), np.array(["a", "b"]), "d", [])


def test_a_file_that_is_not_utf8_names_its_row(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("a,b,label\n1,2,caf\u00e9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1\.csv: row 2: not UTF-8 text \(byte 0xe9\)"):
        load_csv(path)
