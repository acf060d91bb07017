"""The data section with data files, as a new user writes them: file options, real-valued
targets for a regression loss, class names, bad data reported at check time, and `eval`
refusing a checkpoint trained on other data.

The truths come from outside the commands: arrays written into the files here, numpy's
own arithmetic (R^2 from the predictions), and the engine's Standardize fitted by hand.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_helpers import rebuilt, run_cli
from topograd.dsl import DslCheckError, Source, load
from topograd.dsl.build import build_data
from topograd.engine import Tensor, no_grad

from topograd.train import load_checkpoint, save_checkpoint

REGRESSION = """data {{
  dataset file("houses.csv", label="price", delimiter=";")
  {data}
}}
network net {{ linear(1) }}
train {{ loss mse  optimizer sgd(lr=0.1)  epochs 3  batch 16  seed 0 }}
"""

CLASSES = """data {{
  dataset {dataset}
  {data}
}}
network net {{ linear(8)  relu  linear }}
train {{ loss {loss}  optimizer adam(lr=0.01)  epochs 2  batch 16  seed 0 }}
"""


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    """Data paths are relative to the model file and runs/ to the current folder."""
    monkeypatch.chdir(tmp_path)


def houses(tmp_path, n=120, seed=0):
    """A semicolon file: price (first column) = a linear function of three numbers + noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)) * [30, 1, 10] + [100, 3, 40]
    price = x @ [2.0, 15.0, -1.0] + 50 + rng.normal(scale=5, size=n)
    rows = [f"{p:.3f};{a:.3f};{b:.3f};{c:.3f}" for p, (a, b, c) in zip(price, x)]
    (tmp_path / "houses.csv").write_text("price;area;rooms;age\n" + "\n".join(rows) + "\n")
    return x, price


def pets(tmp_path, n=80, name="pets.csv", labels=("cat", "dog")):
    rng = np.random.default_rng(1)
    kinds = [labels[i % len(labels)] for i in range(n)]
    rows = [f"{rng.normal(5 + 10 * (k == labels[-1])):.3f},{rng.normal():.3f},{k}" for k in kinds]
    (tmp_path / name).write_text("weight,noise,animal\n" + "\n".join(rows) + "\n")


def model(tmp_path, template, name="model", **fields):
    defaults = {"data": "", "dataset": '"pets.csv"', "loss": "cross_entropy"}
    path = tmp_path / f"{name}.tg"
    path.write_text(template.format(**(defaults | fields)))
    return path


def problems(path) -> list[str]:
    """Each check problem as 'line:column: message' (the hint after ' | ')."""
    with pytest.raises(DslCheckError) as error:
        load(Source(str(path), path.read_text()))
    return [
        f"{p.pos.line}:{p.pos.column}: {p.message}" + (f" | {p.hint}" if p.hint else "")
        for p in error.value.problems
    ]


# --- reading the file ----------------------------------------------------------------------------
def test_a_regression_loss_reads_the_label_column_as_real_targets(tmp_path):
    _, price = houses(tmp_path)
    built = rebuilt(model(tmp_path, REGRESSION, data="val 0.2  test 0.2"))
    entry = built.spec.data.dataset
    assert entry.name == "file" and entry.kwargs["target"] == "real"
    assert entry.kwargs["path"] == str(tmp_path / "houses.csv")
    parts = built.data.splits
    assert parts.train.regression and parts.train.y.dtype == np.float64
    assert (len(parts.train), len(parts.val), len(parts.test)) == (72, 24, 24)
    got = np.sort(np.concatenate([parts.train.y, parts.val.y, parts.test.y]))
    np.testing.assert_allclose(got, np.sort(np.round(price, 3)))
    assert built.spec.network.output_shape == (1,)


def test_class_names_are_classes_in_sorted_order(tmp_path):
    pets(tmp_path, labels=("dog", "cat", "bird"))
    built = rebuilt(model(tmp_path, CLASSES))
    assert built.data.splits.train.classes == ["bird", "cat", "dog"]
    assert built.spec.data.dataset.kwargs["target"] == "class"
    assert built.spec.network.output_shape == (3,)


def test_run_and_eval_a_file_of_class_names(tmp_path, capsys):
    pets(tmp_path)
    path = model(tmp_path, CLASSES)
    run_cli(["run", str(path), "--no-plots", "--out", "out", "--metrics", "m.json"], capsys)
    out = run_cli(["eval", str(path), "--checkpoint", "out/model.ckpt", "--split", "val"], capsys)
    assert "classes cat, dog" in out.out and "accuracy" in out.out


# --- options and bad data, at check time ---------------------------------------------------------
def test_file_options_are_checked_at_the_option(tmp_path):
    houses(tmp_path)
    text = 'file("houses.csv", label=price, x="a", header=1, delimiter=";;", labl=0)'
    found = problems(model(tmp_path, CLASSES, dataset=text))
    assert found == [
        "2:76: dataset file has no option 'labl' (options: delimiter, header, label, path, x, y)"
        " | did you mean 'label'?"
    ]
    bare = REGRESSION.format(data="").replace('label="price"', "label=price")
    (tmp_path / "bare.tg").write_text(bare)  # a bare name is a name, as elsewhere in the language
    assert load(Source(str(tmp_path / "bare.tg"), bare)).data.dataset.kwargs["label"] == "price"
    text = 'file("houses.csv", label=true, x="a", header=1, delimiter=";;")'
    found = problems(model(tmp_path, CLASSES, dataset=text))
    assert found == [
        "2:30: label is a column index (0 the first, -1 the last) or a header name, got true",
        "2:42: x= is not an option of a CSV file (its options: label=, delimiter=, header=)",
        "2:49: header is true or false (leave it out to detect it), got 1",
        '2:59: delimiter is one character in quotes (";", "\\t"), got \';;\'',
    ]
    found = problems(model(tmp_path, CLASSES, dataset='file("houses.txt")'))
    assert found == ["2:16: a data file is a .csv, .csv.gz or .npz file, got 'houses.txt'"]
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 2)), y=np.array([0, 1, 0, 1]))
    found = problems(model(tmp_path, CLASSES, dataset='file("d.npz", delimiter=";")'))
    assert found == ["2:25: delimiter= is not an option of an .npz archive (its options: x=, y=)"]


@pytest.mark.parametrize(
    ("text", "loss", "expected"),
    [
        ("a,b,label\n" + "1,2,1\n" * 20, "cross_entropy", "every example has class '1'"),
        ("0.1,O.5,1\n" + "0.2,0.3,0\n" * 20, "cross_entropy", "row 1, column 2: value 'O.5'"),
        ("a,b,y\n1,2,0.5\n3,4,1.25\n", "cross_entropy", "row 2, column 3: label '0.5' is not an"),
        ("a,b,y\n1,2,0\n3,4,1\n5,6,cat\n", "cross_entropy", "row 4, column 3: label 'cat' is not"),
        ("a,b,y\n1,2,0\n3,4,x\n", "mse", "row 3, column 3: target 'x' is not a finite number"),
    ],
)
def test_bad_data_is_an_error_at_the_dataset_line(tmp_path, text, loss, expected):
    (tmp_path / "bad.csv").write_text(text)
    found = problems(model(tmp_path, CLASSES, dataset='"bad.csv"', loss=loss))
    assert len(found) == 1
    assert found[0].startswith("2:11: cannot load the dataset: ")
    assert f"{tmp_path / 'bad.csv'}: " in found[0] and expected in found[0]


def test_a_missing_file_is_reported_at_the_dataset_line(tmp_path):
    found = problems(model(tmp_path, CLASSES, dataset='"nothere.csv"'))
    assert found == [f"2:11: cannot load the dataset: no such file: {tmp_path / 'nothere.csv'}"]


def test_a_split_left_empty_is_reported_at_its_setting(tmp_path):
    (tmp_path / "three.csv").write_text("1,2,0\n3,4,1\n5,6,1\n")
    found = problems(model(tmp_path, CLASSES, dataset='"three.csv"', data="val 0.2"))
    assert found == [
        "2:11: test 0.15 of 3 examples leaves the test split empty | each class is split on "
        "its own (stratify true), and the largest has 2 examples; use more examples, a larger "
        "test, or test 0 to go without a test split",
        "3:7: val 0.2 of 3 examples leaves the validation split empty | each class is split on "
        "its own (stratify true), and the largest has 2 examples; use more examples, a larger "
        "val, or val 0 to go without a validation split",
    ]
    load(Source("ok.tg", (tmp_path / "model.tg").read_text().replace("val 0.2", "val 0 test 0")))


def test_drop_last_with_a_training_split_smaller_than_a_batch_is_reported(tmp_path):
    pets(tmp_path, n=20)
    text = CLASSES.format(dataset='"pets.csv"', data="", loss="cross_entropy")
    text = text.replace("batch 16", "batch 16  drop_last true")
    (tmp_path / "drop.tg").write_text(text)
    found = problems(tmp_path / "drop.tg")
    assert len(found) == 1 and found[0].startswith("6:70: the training split has 12 examples")


def test_bce_with_logits_needs_two_classes(tmp_path):
    found = problems(model(tmp_path, CLASSES, dataset="iris", loss="bce_with_logits"))
    assert found[0] == (
        "6:14: loss bce_with_logits needs two classes (0 and 1), and dataset 'iris' has 3 | "
        "cross_entropy takes any number of classes"
    )


# --- eval and the checkpoint's data record -------------------------------------------------------
def train(tmp_path, capsys, path):
    run_cli(["run", str(path), "--no-plots", "--out", "out"], capsys)
    return tmp_path / "out" / "model.ckpt"


def evaluate_cli(path, checkpoint, capsys, expected=0, *options):
    argv = ["eval", str(path), "--checkpoint", str(checkpoint), "--metrics", "e.json", *options]
    captured = run_cli(argv, capsys, expected)
    return captured, (json.loads(open("e.json").read()) if expected == 0 else None)


def test_eval_of_a_regression_reports_r2(tmp_path, capsys):
    houses(tmp_path)
    path = model(tmp_path, REGRESSION, data="preprocess standardize")
    checkpoint = train(tmp_path, capsys, path)
    captured, metrics = evaluate_cli(path, checkpoint, capsys)
    fresh = rebuilt(path)
    load_checkpoint(checkpoint, fresh.model, rngs={})
    test = fresh.data.splits.test
    with no_grad():
        fresh.model.eval()
        predicted = fresh.model(Tensor(test.x)).data.reshape(-1)
    r2 = 1 - np.sum((test.y - predicted) ** 2) / np.sum((test.y - test.y.mean()) ** 2)
    assert metrics["test_r2"] == pytest.approx(r2, rel=1e-12)
    assert metrics["test_accuracy"] is None
    assert metrics["test_loss"] == pytest.approx(np.mean((test.y - predicted) ** 2), rel=1e-12)
    assert "r2" in captured.out and "accuracy" not in captured.out


def test_eval_refuses_a_checkpoint_trained_on_other_data(tmp_path, capsys):
    pets(tmp_path)
    trained = model(tmp_path, CLASSES, data="preprocess standardize")
    checkpoint = train(tmp_path, capsys, trained)
    evaluate_cli(trained, checkpoint, capsys)
    other = model(tmp_path, CLASSES, name="other", data="split_seed 1  val 0.2")
    captured, _ = evaluate_cli(other, checkpoint, capsys, 2)
    assert captured.err == (
        f"topograd: {checkpoint} was trained on other data than {other} describes:\n"
        "  val 0.2 (the checkpoint's: 0.15)\n"
        "  split_seed 1 (the checkpoint's: 0)\n"
        "  preprocess none (the checkpoint's: standardize)\n"
        "evaluate it with the model file it was trained from, or train again with this one\n"
    )
    moons = model(tmp_path, CLASSES, name="moons", dataset="moons", data="preprocess standardize")
    captured, _ = evaluate_cli(moons, checkpoint, capsys, 2)
    assert "  dataset moons (the checkpoint's: file(\"" in captured.err
    # the same file name with other content: one changed number
    text = (tmp_path / "pets.csv").read_text().splitlines()
    text[5] = "99" + text[5][text[5].index(",") :]
    (tmp_path / "pets.csv").write_text("\n".join(text) + "\n")
    captured, _ = evaluate_cli(trained, checkpoint, capsys, 2)
    assert (
        f"  the examples of {tmp_path / 'pets.csv'} changed: 80 examples, sha256 " in captured.err
    )


def test_eval_uses_the_checkpoints_fitted_statistics(tmp_path, capsys):
    houses(tmp_path)
    path = model(tmp_path, REGRESSION, data="preprocess standardize")
    checkpoint = train(tmp_path, capsys, path)
    _, honest = evaluate_cli(path, checkpoint, capsys)
    # the same weights with statistics that are not the ones a refit gives: eval must use them
    built = rebuilt(path)
    info = load_checkpoint(checkpoint, built.model, rngs={})
    record = dict(info.extra["data"])
    record["statistics"] = {
        "0.mean": record["statistics"]["0.mean"] + 1.0,
        "0.std": record["statistics"]["0.std"],
    }
    save_checkpoint(tmp_path / "shifted.ckpt", built.model, extra={"data": record})
    _, shifted = evaluate_cli(path, tmp_path / "shifted.ckpt", capsys)
    by_hand = build_data(built.spec, statistics=record["statistics"]).splits.test
    with no_grad():
        built.model.eval()
        predicted = built.model(Tensor(by_hand.x)).data.reshape(-1)
    assert shifted["test_loss"] == pytest.approx(np.mean((by_hand.y - predicted) ** 2), rel=1e-12)
    assert shifted["test_loss"] > 2 * honest["test_loss"]


def test_a_checkpoint_without_a_record_is_evaluated_with_a_note(tmp_path, capsys):
    pets(tmp_path)
    path = model(tmp_path, CLASSES)
    built = rebuilt(path)
    save_checkpoint(tmp_path / "old.ckpt", built.model)
    captured, _ = evaluate_cli(path, tmp_path / "old.ckpt", capsys)
    assert "records no data section" in captured.err and "accuracy" in captured.out
