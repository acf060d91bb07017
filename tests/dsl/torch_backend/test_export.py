"""`topograd export FILE -o model.py`: the standalone PyTorch script and its .npz.

The truths come from outside the exporter: the engine's own `fit` on objects built from the
same file (what `topograd run` calls) gives the losses the script must print; ruff and Python's
own parser judge the script's text; torch's signatures hold the defaults the exporter leaves
out; engine.data.augment draws the random numbers the script's numpy augmentations must draw.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from topograd.dsl import load, read_source
from topograd.dsl.build import build
from topograd.dsl.cli import main
from topograd.dsl.torch_backend.export import (
    ACTIVATIONS,
    AUGMENTATION_CALLS,
    AUGMENTATION_SOURCE,
    OPTIMIZER_TABLE,
    SCHEDULE_TABLE,
)
from topograd.dsl.training import fit_arguments
from topograd.engine.data.augment import AUGMENTATIONS

from topograd.optim import OPTIMIZERS
from topograd.optim.schedules import SCHEDULES
from topograd.train import evaluate, fit

ROOT = Path(__file__).resolve().parents[3]
SAMPLES = ROOT / "samples"
RUFF = Path(sys.executable).with_name("ruff")
STANDALONE = {"argparse", "json", "math", "pathlib", "numpy", "torch"}

VARIETY = """
data {
  dataset digits
  val 0.2
  test 0.2
  preprocess standardize
  augment flip(p=0.3)
  augment noise(std=0.05)
  augment cutout(size=3)
  augment brightness_contrast
}
network train {
  conv2d(4, 3, padding=1)
  instancenorm2d(affine=true)
  tanh
  avgpool2d(2)
  flatten
  hidden = maxout(12, pieces=3)
  layernorm
  leaky_relu(negative_slope=0.1)
  eval = linear(8)
  dropout(drop=0)
  elu
  linear
}
train {
  loss hinge
  l2 1e-3
  optimizer sgd(lr=0.05, momentum=0.9, nesterov=true, weight_decay=1e-4)
  decay weights
  schedule warmup(warmup_steps=5, after=cosine_restarts(T_0=7, max_decay=0.5, eta_min=1e-4))
  drop_last true
  epochs 2
  batch 50
  seed 3
}
"""

SMALL = """
data {{ dataset moons(n=60)  val 0.2  test 0.2  {data} }}
network net {{ {layers} }}
train {{ loss cross_entropy  optimizer {optimizer}  {train}  epochs 1  batch 16 }}
"""


def small(tmp_path, layers="linear(8)  relu  linear", optimizer="adam", data="", train=""):
    path = tmp_path / "small.tg"
    path.write_text(SMALL.format(layers=layers, optimizer=optimizer, data=data, train=train))
    return path


def export(tmp_path, model: Path, *options) -> Path:
    script = tmp_path / "out" / f"{model.stem}.py"
    assert main(["export", str(model), "-o", str(script), *options]) == 0
    return script


def engine_history(model: Path, epochs: int):
    """What `topograd run FILE --epochs N` trains: fit on the objects built from the file."""
    source = read_source(model)
    built = build(load(source), source)
    options = fit_arguments(built, progress=False, epochs=epochs, log=None)
    history = fit(built.model, built.data.splits.train, built.optimizer, **options)
    return history, built


def run_script(script: Path, epochs: int) -> tuple[dict, str]:
    """The script in a fresh interpreter (as a person runs it): its metrics and its output."""
    metrics = script.with_name("metrics.json")
    done = subprocess.run(
        [sys.executable, str(script), "--epochs", str(epochs), "--metrics", str(metrics)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        cwd=script.parent.parent,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(metrics.read_text()), done.stdout


def without_dropout(tmp_path, name: str) -> Path:
    """The sample with its dropout lines removed (dropout masks come from different
    generators in the two engines); every other line as it is."""
    lines = (SAMPLES / name).read_text().splitlines()
    path = tmp_path / name
    path.write_text("\n".join(line for line in lines if "dropout" not in line) + "\n")
    return path


def assert_same_run(history, built, metrics, rtol=1e-9):
    for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
        if getattr(history, key):
            np.testing.assert_allclose(metrics[key], getattr(history, key), rtol=rtol, err_msg=key)
    if len(built.data.splits.test):
        loss, accuracy = evaluate(built.model, built.data.splits.test, built.loss)
        np.testing.assert_allclose(metrics["test_loss"], loss, rtol=rtol)
        assert metrics["test_acc"] == accuracy


# --- the samples: the same losses as `topograd run` ---------------------------------------------
@pytest.mark.parametrize(
    ("name", "epochs"), [("digits.tg", 2), ("digits_cnn.tg", 2), ("moons_scalar.tg", 2)]
)
def test_the_script_trains_as_topograd_run_does(tmp_path, name, epochs):
    """float64, dropout off: every epoch's train and val loss and accuracy and the final test
    accuracy equal the engine's (digits: batch norm, Adam with `decay weights`, cosine per
    batch; digits_cnn: conv, pooling, and crop augmentation drawn from the batch generator;
    moons_scalar: a scalar network as nn.Linear layers, hinge, l2 and a cyclic schedule)."""
    model = without_dropout(tmp_path, name)
    script = export(tmp_path, model)
    metrics, output = run_script(script, epochs)
    history, built = engine_history(model, epochs)
    assert_same_run(history, built, metrics)
    assert f"epoch   1/{epochs}  loss " in output
    assert ("test accuracy " in output) == bool(len(built.data.splits.test))


def test_dropout_is_torchs_own(tmp_path):
    """The sample keeps its dropout as nn.Dropout, seeded from the file's seed."""
    text = export(tmp_path, SAMPLES / "digits.tg").read_text()
    assert "self.dropout1 = nn.Dropout(p=0.2)" in text
    assert "torch.manual_seed(SEED)  # dropout's masks" in text
    assert "self.out = nn.Linear(256, 10)" in text


def test_every_translated_construct_trains_as_the_engine_does(tmp_path):
    """Maxout (a module of its own), instance and layer norm, avg pooling, a label that would
    hide a method of nn.Module, dropout that drops nothing (p=0), four augmentations,
    multiclass hinge with l2, Nesterov SGD with `decay weights`, a warm-up in front of
    cosine restarts with max_decay (a LambdaLR), drop_last: the same losses."""
    model = tmp_path / "variety.tg"
    model.write_text(VARIETY)
    script = export(tmp_path, model)
    text = script.read_text()
    assert "class Maxout(nn.Module):" in text and "self.hidden = Maxout(64, 12, pieces=3)" in text
    assert "self.eval_layer = nn.Linear(12, 8)" in text  # `eval` would hide model.eval()
    metrics, _ = run_script(script, 2)
    history, built = engine_history(model, 2)
    assert_same_run(history, built, metrics)


def test_early_stopping_stops_where_the_engine_stops(tmp_path):
    """Run in this process (torch is imported already): the same stopping epoch, the best
    epoch's weights put back, the same test accuracy."""
    model = small(tmp_path, optimizer="adam(lr=0.3)", train="early_stopping 1  seed 1")
    model.write_text(model.read_text().replace("epochs 1", "epochs 30"))
    script = export(tmp_path, model)
    history, built = engine_history(model, 30)
    assert history.stopped == "early stopping" and len(history.epochs) < 30
    spec = importlib.util.spec_from_file_location("exported_small", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    metrics_path = tmp_path / "metrics.json"
    previous = torch.get_default_dtype()
    try:
        module.main(["--metrics", str(metrics_path)])
    finally:
        torch.set_default_dtype(previous)  # the script sets float64 for this whole process
    metrics = json.loads(metrics_path.read_text())
    assert metrics["epoch"] == history.epochs
    assert_same_run(history, built, metrics)


# --- the script's text ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["digits.tg", "digits_cnn.tg", "moons_scalar.tg"])
def test_the_script_is_standalone_and_ruff_clean(tmp_path, name):
    script = export(tmp_path, SAMPLES / name)
    assert_standalone_and_ruff_clean(script)
    with np.load(script.with_suffix(".npz"), allow_pickle=False) as data:
        assert {"train_x", "train_y", "val_x", "val_y", "test_x", "test_y"} <= set(data.files)


def assert_standalone_and_ruff_clean(script: Path) -> None:
    """It imports only numpy, torch and the standard library, and ruff finds nothing to fix
    or reformat (the project's settings)."""
    tree = ast.parse(script.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    assert imported <= STANDALONE, imported - STANDALONE
    config = ["--config", str(ROOT / "pyproject.toml")]
    for command in (["check", "--quiet"], ["format", "--check", "--quiet"]):
        done = subprocess.run([str(RUFF), *command, *config, str(script)], capture_output=True)
        assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()


def test_the_initial_weights_are_the_engines_in_torch_layout(tmp_path):
    script = export(tmp_path, SAMPLES / "moons_scalar.tg")
    source = read_source(SAMPLES / "moons_scalar.tg")
    model = build(load(source), source).model
    with np.load(script.with_suffix(".npz"), allow_pickle=False) as data:
        weight, bias = data["init.linear1.weight"], data["init.linear1.bias"]
    assert weight.shape == (16, 2)  # torch's (out, in)
    neuron = model[0]._neurons[5]
    assert weight[5, 1] == float(neuron.w1.data) and bias[5] == float(neuron.b.data)


def test_the_seed_and_epochs_options_change_the_script(tmp_path):
    script = export(tmp_path, SAMPLES / "digits.tg", "--epochs", "3", "--seed", "7")
    text = script.read_text()
    assert "EPOCHS = 3\n" in text and "SEED = 7\n" in text
    source = read_source(SAMPLES / "digits.tg")
    seeded = build(load(source), source, seed=7).model
    with np.load(script.with_suffix(".npz"), allow_pickle=False) as data:
        np.testing.assert_array_equal(data["init.out.weight"], seeded[8].weight.data.T)


# --- the tables against torch and the engine -----------------------------------------------------
def test_the_defaults_left_out_are_torchs():
    """Options equal to the engine's defaults are not written: they must be torch's too."""
    for name, (torch_class, options) in OPTIMIZER_TABLE.items():
        ours = inspect.signature(OPTIMIZERS.get(name)).parameters
        theirs = inspect.signature(getattr(torch.optim, torch_class)).parameters
        for option in options:
            assert ours[option].default == theirs[option].default, (name, option)
    for name, (torch_class, options) in SCHEDULE_TABLE.items():
        ours = inspect.signature(SCHEDULES.get(name)).parameters
        theirs = inspect.signature(getattr(torch.optim.lr_scheduler, torch_class)).parameters
        for option in options:
            if ours[option].default is not inspect.Parameter.empty:
                assert ours[option].default == theirs[option].default, (name, option)
    for _, torch_class, defaults in ACTIVATIONS.values():
        theirs = inspect.signature(getattr(torch.nn, torch_class.removeprefix("nn."))).parameters
        for option, value in defaults.items():
            assert theirs[option].default == value, (torch_class, option)


@pytest.mark.parametrize("name", sorted(AUGMENTATION_SOURCE))
def test_the_scripts_augmentations_draw_what_the_engines_draw(name):
    function, defaults = AUGMENTATION_CALLS[name]
    options = {"noise": {"std": 0.3}, "cutout": {"size": 3}}.get(name, {})
    namespace = {"np": np}
    exec(AUGMENTATION_SOURCE[name], namespace)
    images = np.random.default_rng(1).normal(size=(9, 2, 6, 7))
    ours = namespace[function](images, np.random.default_rng(5), **{**defaults, **options})
    engine = AUGMENTATIONS.get(name)(**options)(images, np.random.default_rng(5))
    np.testing.assert_array_equal(ours, engine)


# --- refusals: a clear message, exit 2, nothing written ------------------------------------------
REFUSED = [
    ({"layers": "linear(8)  dropout(drop=0.2, inverted=false)  linear"}, "vanilla dropout"),
    ({"optimizer": "adam(lr=0.01, bias_correction=false)"}, "bias_correction=False"),
    ({"optimizer": "rmsprop(eps_inside_sqrt=true)"}, "eps_inside_sqrt=True"),
    ({"optimizer": "sgd(lr=0.1, momentum=0.9, momentum_form=ewma)"}, "momentum_form"),
    (
        {"train": "schedule warmup(warmup_steps=2, after=cyclic(base_lr=0.1, max_lr=1.0))"},
        "cyclic schedule after a warm-up",
    ),
    ({"optimizer": "[sgd(lr=0.1), adam]"}, "compares 2 optimizers"),
]


def refused(tmp_path, capsys, argv, *fragments) -> None:
    """Exit 2 naming the construct; the output folder stays empty."""
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    assert main([*argv, "-o", str(out / "model.py")]) == 2
    error = capsys.readouterr().err
    for fragment in fragments:
        assert fragment in error
    assert "Traceback" not in error
    assert list(out.iterdir()) == []


@pytest.mark.parametrize(("change", "fragment"), REFUSED)
def test_constructs_without_a_torch_counterpart_are_refused(tmp_path, capsys, change, fragment):
    model = small(tmp_path, **change)
    refused(tmp_path, capsys, ["export", str(model)], "cannot export", fragment)


def test_a_scale_crop_augmentation_is_refused(tmp_path, capsys):
    model = small(tmp_path, data="augment scale_crop")
    model.write_text(model.read_text().replace("moons(n=60)", "digits"))
    refused(tmp_path, capsys, ["export", str(model)], "augmentation 'scale_crop' at line")


def test_a_plugins_op_is_refused(tmp_path, capsys):
    plugin = SAMPLES / "plugins" / "swish.py"
    argv = ["--plugin", str(plugin), "export", str(SAMPLES / "plugins" / "swish_moons.tg")]
    try:
        refused(tmp_path, capsys, argv, "the custom op 'swish' at line 27")
    finally:
        from topograd.engine.custom_ops import CUSTOM

        from topograd import unregister_op

        if "swish" in CUSTOM:
            unregister_op("swish")
        for name in [name for name in sys.modules if name.startswith("topograd_plugin_swish_")]:
            del sys.modules[name]


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("softmax_graph.tg", "it has graphs and no network"),
        ("snapshot.tg", "snapshot ensemble"),
        ("lr_range.tg", "lr_range_test section"),
    ],
)
def test_files_that_are_not_one_training_run_are_refused(tmp_path, capsys, name, fragment):
    refused(tmp_path, capsys, ["export", str(SAMPLES / name)], fragment)


def test_a_refusal_leaves_an_earlier_export_alone(tmp_path, capsys):
    script = export(tmp_path, small(tmp_path))
    before = script.read_text(), script.with_suffix(".npz").read_bytes()
    model = small(tmp_path, layers="linear(8)  dropout(drop=0.2, inverted=false)  linear")
    assert main(["export", str(model), "-o", str(script)]) == 2
    assert (script.read_text(), script.with_suffix(".npz").read_bytes()) == before
    assert sorted(p.name for p in script.parent.iterdir()) == ["small.npz", "small.py"]


def test_an_output_that_cannot_be_written_leaves_nothing(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["export", str(small(tmp_path)), "-o", str(blocker / "model.py")]) == 2
    assert "cannot write" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "small.tg"]
