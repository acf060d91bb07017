"""Datasets, files, splits and batches against facts nobody computed with this code: the
published class counts of the digits and iris data, the files read by numpy itself, the
scikit-learn and cs231n generator recipes with the noise switched off, and set arithmetic
on example ids for splits and batches."""

from __future__ import annotations

import gzip
from importlib import resources

import numpy as np
import pytest

from topograd.data import (
    DataError,
    Dataset,
    Splits,
    batches,
    load_csv,
    load_dataset,
    load_digits,
    load_iris,
    load_npz,
    make_circles,
    make_moons,
    make_spiral,
    split,
)

# scikit-learn's documentation of load_digits: 1797 samples, 10 classes, about 180 per class.
DIGIT_COUNTS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def numbered(n=200, classes=4, features=3, seed=0):
    """A dataset whose first feature is the example's id, so parts can be traced back."""
    rng = np.random.default_rng(seed)
    x = np.c_[np.arange(n), rng.normal(size=(n, features - 1))]
    y = np.arange(n) % classes
    return Dataset(x, y, "numbered", [f"c{k}" for k in range(classes)])


def ids(dataset):
    return dataset.x[:, 0].astype(int)


# --- bundled data ---------------------------------------------------------------------------
def test_digits_has_the_published_shape_classes_and_counts():
    digits = load_digits()
    assert len(digits) == 1797 and digits.x.shape == (1797, 64)
    assert digits.x.dtype == np.float64 and digits.y.dtype == np.int64
    assert digits.num_classes == 10 and digits.classes == [str(k) for k in range(10)]
    assert np.bincount(digits.y).tolist() == DIGIT_COUNTS
    assert digits.x.min() == 0 and digits.x.max() == 16  # raw: no scaling at load time
    assert np.array_equal(digits.x, np.round(digits.x))
    assert digits.image_shape == (1, 8, 8)


def test_digits_rows_equal_the_file_as_numpy_reads_it():
    raw = (
        resources.files("topograd.engine.data")
        .joinpath("files")
        .joinpath("digits.csv.gz")
        .read_bytes()
    )
    table = np.loadtxt(gzip.decompress(raw).decode().splitlines(), delimiter=",")
    digits = load_digits()
    assert np.array_equal(digits.x, table[:, :-1]) and np.array_equal(digits.y, table[:, -1])
    images = digits.images()
    assert images.shape == (1797, 1, 8, 8)
    assert np.array_equal(images[0, 0, 0], [0, 0, 5, 13, 9, 1, 0, 0])  # first line of the file


def test_iris_has_150_flowers_in_3_species_with_the_known_means():
    iris = load_iris()
    assert iris.x.shape == (150, 4) and iris.classes == ["setosa", "versicolor", "virginica"]
    assert np.bincount(iris.y).tolist() == [50, 50, 50]
    assert np.array_equal(iris.x[0], [5.1, 3.5, 1.4, 0.2]) and iris.y[0] == 0
    # the column means scikit-learn's copy gives (sepal length, sepal width, petal l, petal w)
    assert np.allclose(iris.x.mean(axis=0), [5.8433, 3.0573, 3.758, 1.1993], atol=1e-4)
    with pytest.raises(ValueError, match="not image-shaped"):
        iris.images()


def test_bundled_data_load_from_the_package_not_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert len(load_dataset("digits")) == 1797 and len(load_dataset("iris")) == 150


# --- Dataset --------------------------------------------------------------------------------
def test_dataset_validates_its_arrays():
    with pytest.raises(ValueError, match="y must be"):
        Dataset(np.zeros((3, 2)), np.zeros(4, dtype=int), "bad", ["a"])
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.1"):
        Dataset(np.zeros((3, 2)), np.array([0, 1, 2]), "bad", ["a", "b"])
    with pytest.raises(ValueError, match="integers"):
        Dataset(np.zeros((3, 2)), np.array([0.0, 1.0, 0.5]), "bad", ["a", "b"])
    with pytest.raises(ValueError, match="image_shape"):
        Dataset(np.zeros((3, 10)), np.zeros(3, dtype=int), "bad", ["a"], (1, 3, 3))


def test_subset_copies_the_selected_examples():
    data = numbered(10, classes=2)
    part = data.subset([7, 2])
    assert ids(part).tolist() == [7, 2] and part.y.tolist() == [1, 0]
    part.x[:] = -1
    assert data.x[7, 0] == 7
    assert part.classes == data.classes and part.num_classes == 2
    assert len(data.subset(data.y == 1)) == 5


# --- generators -----------------------------------------------------------------------------
@pytest.mark.parametrize("make", [make_moons, make_circles, make_spiral])
def test_generators_are_seeded_and_balanced(make):
    first, again, other = make(seed=1), make(seed=1), make(seed=2)
    assert np.array_equal(first.x, again.x) and np.array_equal(first.y, again.y)
    assert not np.allclose(first.x, other.x)
    assert first.x.shape[1] == 2 and len(set(np.bincount(first.y))) == 1
    assert first.y[: len(first) // 2].min() != first.y[: len(first) // 2].max()  # shuffled


def test_moons_without_noise_lie_on_the_two_half_circles():
    moons = make_moons(n=101, noise=0.0)
    top, bottom = moons.x[moons.y == 0], moons.x[moons.y == 1]
    assert len(top) == 50 and len(bottom) == 51
    assert np.allclose(np.hypot(*top.T), 1) and np.all(top[:, 1] >= -1e-12)
    assert np.allclose(np.hypot(bottom[:, 0] - 1, bottom[:, 1] - 0.5), 1)
    assert np.all(bottom[:, 1] <= 0.5 + 1e-12)


def test_circles_without_noise_have_radius_one_and_factor():
    circles = make_circles(n=100, noise=0.0, factor=0.3)
    radius = np.hypot(*circles.x.T)
    assert np.allclose(radius[circles.y == 0], 1) and np.allclose(radius[circles.y == 1], 0.3)
    with pytest.raises(ValueError, match="factor"):
        make_circles(factor=1.5)


def test_spiral_without_noise_is_the_cs231n_recipe():
    n, k = 50, 3
    expected = np.zeros((n * k, 2))
    for j in range(k):  # cs231n's loop, verbatim but for the noise
        ix = range(n * j, n * (j + 1))
        r = np.linspace(0.0, 1, n)
        t = np.linspace(j * 4, (j + 1) * 4, n)
        expected[ix] = np.c_[r * np.sin(t), r * np.cos(t)]
    spiral = make_spiral(n_per_class=n, classes=k, noise=0.0)
    for j in range(k):
        got = spiral.x[spiral.y == j]
        want = expected[n * j : n * (j + 1)]
        assert np.allclose(got[np.lexsort(got.T)], want[np.lexsort(want.T)])


# --- CSV ------------------------------------------------------------------------------------
def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_reads_numbers_a_header_and_the_label_column(tmp_path):
    path = write(tmp_path, "ok.csv", "a,b,label\n1,2,0\n3.5,-4e-1,1\n\n5,6,1\n")
    data = load_csv(path)
    assert np.array_equal(data.x, [[1, 2], [3.5, -0.4], [5, 6]])
    assert data.y.tolist() == [0, 1, 1] and data.classes == ["0", "1"] and data.name == "ok.csv"
    first = load_csv(write(tmp_path, "first.csv", "2,1,2\n1,3,4\n"), label_column=0)
    assert np.array_equal(first.x, [[1, 2], [3, 4]]) and first.y.tolist() == [1, 0]


def test_csv_labels_are_renumbered_from_zero_and_keep_their_names(tmp_path):
    data = load_csv(write(tmp_path, "ones.csv", "0.5,1\n0.1,3\n0.2,3.0\n"))
    assert data.y.tolist() == [0, 1, 1] and data.classes == ["1", "3"]


def test_csv_gz_files_are_read(tmp_path):
    path = tmp_path / "small.csv.gz"
    path.write_bytes(gzip.compress(b"1,2,0\n3,4,1\n"))
    assert load_dataset(str(path)).x.tolist() == [[1, 2], [3, 4]]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("x,y,label\n1,2,0\n3,4\n", r"ragged\.csv: row 3 has 2 columns, expected 3"),
        ("1,2,0\n\n3,4,1,7\n", r"ragged\.csv: row 3 has 4 columns, expected 3"),
        ("x,y,label\n1,2,0\n3,abc,1\n", r"ragged\.csv: row 3, column 2: value 'abc'"),
        ("1,2,0\n3,4,1.5\n", r"ragged\.csv: row 2, column 3: label '1.5' is not an integer"),
        ("1,2,0\n3,4,cat\n", r"ragged\.csv: row 2, column 3: label 'cat'"),
        ("1,2,0\n3,nan,1\n", r"ragged\.csv: row 2, column 2: value 'nan'"),
        ("", r"ragged\.csv: no data rows"),
        ("x,y,label\n", r"ragged\.csv: no data rows"),
    ],
)
def test_csv_errors_name_the_file_row_and_column(tmp_path, text, where):
    path = write(tmp_path, "ragged.csv", text)
    with pytest.raises(DataError, match=where):
        load_csv(path)


def test_data_errors_are_value_errors(tmp_path):
    with pytest.raises(ValueError):
        load_csv(write(tmp_path, "empty.csv", ""))


def test_csv_header_can_be_forced(tmp_path):
    path = write(tmp_path, "numeric_header.csv", "9,9,9\n1,2,0\n")
    assert len(load_csv(path, header=True)) == 1 and len(load_csv(path)) == 2
    with pytest.raises(DataError, match="row 1, column 1: value 'x'"):
        load_csv(write(tmp_path, "h.csv", "x,y\n1,0\n"), header=False)


# --- NPZ ------------------------------------------------------------------------------------
def test_npz_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 5)), rng.integers(0, 3, 20)
    y[:3] = [0, 1, 2]
    np.savez(tmp_path / "d.npz", x=x, y=y)
    data = load_npz(tmp_path / "d.npz")
    assert np.array_equal(data.x, x) and np.array_equal(data.y, y) and data.image_shape is None
    np.savez(tmp_path / "other.npz", features=x, labels=y, classes=np.array(["a", "b", "c"]))
    named = load_dataset(str(tmp_path / "other.npz"), x_key="features", y_key="labels")
    assert named.classes == ["a", "b", "c"] and np.array_equal(named.y, y)


def test_npz_images_are_flattened_with_their_shape(tmp_path):
    digits = load_digits()
    np.savez(tmp_path / "img.npz", x=digits.images()[:10], y=digits.y[:10])
    data = load_npz(tmp_path / "img.npz")
    assert data.image_shape == (1, 8, 8) and np.array_equal(data.x, digits.x[:10])
    np.savez(tmp_path / "gray.npz", x=digits.images()[:10, 0], y=digits.y[:10])
    assert np.array_equal(load_npz(tmp_path / "gray.npz").images(), digits.images()[:10])


def test_npz_errors_name_the_file_and_key(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 2)), y=np.zeros(3, dtype=int))
    with pytest.raises(DataError, match=r"d\.npz: no array named 'labels'.*\['x', 'y'\]"):
        load_npz(tmp_path / "d.npz", y_key="labels")
    with pytest.raises(DataError, match=r"d\.npz: 'y' must be one label per example.*4 rows"):
        load_npz(tmp_path / "d.npz")
    np.savez(tmp_path / "f.npz", x=np.zeros((2, 2)), y=np.array([0.5, 1.0]))
    with pytest.raises(DataError, match=r"f\.npz: 'y' labels must be integers"):
        load_npz(tmp_path / "f.npz")
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}], dtype=object), y=np.zeros(1))
    with pytest.raises(ValueError, match="allow_pickle"):  # pickles are refused, never run
        load_npz(tmp_path / "obj.npz")


# --- load_dataset ---------------------------------------------------------------------------
def test_load_dataset_resolves_names_and_passes_options():
    assert np.array_equal(load_dataset("moons", n=50, seed=3).x, make_moons(n=50, seed=3).x)
    assert len(load_dataset("spiral", n_per_class=10, classes=4)) == 40


def test_unknown_dataset_lists_the_names_and_suggests_the_closest():
    with pytest.raises(DataError, match=r"circles, digits, iris, moons, spiral.*'digits'\?"):
        load_dataset("digts")
    with pytest.raises(DataError, match="unknown dataset 'qqqq'") as error:
        load_dataset("qqqq")
    assert "did you mean" not in str(error.value)


# --- split ----------------------------------------------------------------------------------
def test_split_parts_are_disjoint_cover_everything_and_have_the_asked_sizes():
    data = numbered(1000)
    parts = split(data, val=0.2, test=0.1, seed=0)
    assert isinstance(parts, Splits)
    train, val, test = (set(ids(part)) for part in parts)
    assert not (train & val or train & test or val & test)
    assert train | val | test == set(range(1000))
    assert (len(parts.train), len(parts.val), len(parts.test)) == (700, 200, 100)
    for part in parts:  # every part still pairs each example with its own label
        assert np.array_equal(part.y, ids(part) % 4)


def test_split_is_stratified_by_class():
    digits = load_digits()
    parts = split(digits, val=0.15, test=0.15, seed=0)
    for part, fraction in ((parts.val, 0.15), (parts.test, 0.15), (parts.train, 0.7)):
        counts = np.bincount(part.y, minlength=10)
        assert np.all(np.abs(counts - fraction * np.array(DIGIT_COUNTS)) <= 1)


def test_split_is_seeded():
    data = numbered(300)
    same = [ids(part).tolist() for part in split(data, seed=5)]
    assert same == [ids(part).tolist() for part in split(data, seed=5)]
    assert same != [ids(part).tolist() for part in split(data, seed=6)]


def test_unstratified_split_and_empty_parts():
    data = numbered(100)
    parts = split(data, val=0.25, test=0.0, stratify=False)
    assert (len(parts.train), len(parts.val), len(parts.test)) == (75, 25, 0)
    assert parts.test.x.shape == (0, 3)


@pytest.mark.parametrize(("val", "test"), [(-0.1, 0.1), (0.5, 0.5), (1.0, 0.0), (0.2, 1.2)])
def test_split_fractions_are_validated(val, test):
    with pytest.raises(ValueError, match=r"fraction|< 1"):
        split(numbered(), val=val, test=test)


def test_tiny_classes_keep_a_training_example():
    data = Dataset(np.arange(5.0), np.array([0, 0, 0, 0, 1]), "tiny", ["a", "b"])
    parts = split(data, val=0.3, test=0.3)
    assert 1 in parts.train.y and len(parts.train) + len(parts.val) + len(parts.test) == 5


# --- batches --------------------------------------------------------------------------------
def ids_of(xb):
    return xb[:, 0].astype(int)


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("batch_size", [1, 7, 32, 100, 150])
def test_batches_cover_every_example_exactly_once(shuffle, batch_size):
    data = numbered(100)
    seen = []
    sizes = []
    for xb, yb in batches(data.x, data.y, batch_size, shuffle=shuffle, rng=0):
        assert np.array_equal(yb, ids_of(xb) % 4)
        seen += ids_of(xb).tolist()
        sizes.append(len(xb))
    assert sorted(seen) == list(range(100))
    assert sizes[:-1] == [batch_size] * (len(sizes) - 1) and 0 < sizes[-1] <= batch_size
    if not shuffle:
        assert seen == list(range(100))


def test_drop_last_drops_only_the_short_batch():
    data = numbered(100)
    sizes = [len(xb) for xb, _ in batches(data.x, data.y, 32, rng=0, drop_last=True)]
    assert sizes == [32, 32, 32]


def test_batches_are_reproducible_and_a_generator_reshuffles_each_epoch():
    data = numbered(50)

    def order(rng):
        return [i for xb, _ in batches(data.x, data.y, 8, rng=rng) for i in ids_of(xb)]

    assert order(3) == order(3) and order(3) != order(4)
    generator = np.random.default_rng(3)
    first_epoch, second_epoch = order(generator), order(generator)
    assert first_epoch == order(3) and second_epoch != first_epoch
    replay = np.random.default_rng(3)
    assert [order(replay), order(replay)] == [first_epoch, second_epoch]


def test_batches_without_labels_and_bad_arguments():
    x = np.arange(10.0)
    assert [yb for _, yb in batches(x, None, 4, shuffle=False)] == [None, None, None]
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        batches(x, None, 0)  # raised at the call, not at the first next()
    with pytest.raises(TypeError, match="batch_size must be an int"):
        batches(x, None, 2.5)
    with pytest.raises(ValueError, match="10 examples but y has 9"):
        batches(x, np.zeros(9), 2)
