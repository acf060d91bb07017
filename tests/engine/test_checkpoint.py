"""Checkpoints: a resumed run equals an uninterrupted one bit for bit, and bad files are refused.

The central test trains an MLP with batch norm and dropout (Adam with two parameter groups,
a warm-up in front of a multi-step schedule, mini-batches drawn from their own generator)
for 10 epochs in one go, and again for 5 epochs, saves, builds every object afresh from
another seed, loads and trains 5 more: the weights must be equal, not close. Then: every
kind of misfit or damage is refused with a message that says which and changes nothing, a
pickled array is never unpickled, and a process killed with SIGKILL while saving leaves the
previous checkpoint whole.
"""

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from topograd.engine.modes import STATE

from topograd import Tensor, manual_seed, nn
from topograd import functional as F
from topograd.optim import SGD, Adam
from topograd.optim.schedules import CosineAnnealingLR, LinearWarmup, MultiStepLR
from topograd.train import (
    CheckpointError,
    checkpoint_info,
    load_checkpoint,
    save_checkpoint,
)

ROOT = Path(__file__).resolve().parents[2]
SAMPLES, FEATURES, CLASSES, BATCH = 48, 4, 3, 12
_DATA = np.random.default_rng(1234)
X = _DATA.standard_normal((SAMPLES, FEATURES))
Y = _DATA.integers(0, CLASSES, SAMPLES)


class Run:
    """One training run's objects, all drawn from `seed`: two runs with different seeds differ
    in every weight and every random number until one loads the other's checkpoint."""

    def __init__(self, seed):
        manual_seed(seed)
        self.model = nn.Sequential(
            nn.Linear(FEATURES, 16, init="he"),
            nn.BatchNorm1d(16),
            nn.ReLU(),
            nn.Dropout(0.3),
            nn.Linear(16, CLASSES),
        )
        matrices = [p for p in self.model.parameters() if p.data.ndim == 2]
        others = [p for p in self.model.parameters() if p.data.ndim != 2]
        self.optimizer = Adam(
            [{"params": matrices, "weight_decay": 1e-3}, {"params": others}],
            lr=0.01,
            betas=(0.8, 0.99),
        )
        after = MultiStepLR(self.optimizer, milestones=[10, 20, 20], gamma=0.5)
        self.schedule = LinearWarmup(self.optimizer, 6, after=after)
        self.batches = np.random.default_rng(seed + 1)
        self.history = []

    def rngs(self):
        return {"engine": STATE.rng, "batches": self.batches}

    def epoch(self):
        self.model.train()
        order = self.batches.permutation(SAMPLES)
        for start in range(0, SAMPLES, BATCH):
            rows = order[start : start + BATCH]
            loss = F.cross_entropy(self.model(Tensor(X[rows])), Y[rows])
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            self.schedule.step()
            self.history.append(loss.item())

    def save(self, path, epoch):
        return save_checkpoint(
            path,
            self.model,
            self.optimizer,
            self.schedule,
            rngs=self.rngs(),
            epoch=epoch,
            step=self.schedule.last_epoch,
            extra={"history": self.history},
        )


def assert_identical(left, right, where="state"):
    """Equal values of equal types, arrays compared bit for bit (dtype included)."""
    assert type(left) is type(right), f"{where}: {type(left).__name__} != {type(right).__name__}"
    if isinstance(left, np.ndarray):
        assert left.dtype == right.dtype and np.array_equal(left, right), where
    elif isinstance(left, dict):
        assert left.keys() == right.keys(), where
        for key in left:
            assert_identical(left[key], right[key], f"{where}[{key!r}]")
    elif isinstance(left, list | tuple):
        assert len(left) == len(right), where
        for index, (a, b) in enumerate(zip(left, right, strict=True)):
            assert_identical(a, b, f"{where}[{index}]")
    else:
        assert left == right, f"{where}: {left!r} != {right!r}"


def trained_for(epochs, seed=0):
    run = Run(seed)
    for _ in range(epochs):
        run.epoch()
    return run


# --- a resumed run continues exactly ----------------------------------------------------------
def test_resumed_training_equals_uninterrupted_training(tmp_path):
    straight = trained_for(10)
    straight_engine_rng = STATE.rng.bit_generator.state

    path = trained_for(5).save(tmp_path / "run.npz", epoch=5)
    resumed = Run(seed=99)
    info = load_checkpoint(
        path, resumed.model, resumed.optimizer, resumed.schedule, rngs=resumed.rngs()
    )
    resumed.history = list(info.extra["history"])
    for _ in range(info.epoch, 10):
        resumed.epoch()

    assert_identical(resumed.model.state_dict(), straight.model.state_dict(), "model")
    assert_identical(resumed.optimizer.state_dict(), straight.optimizer.state_dict(), "optimizer")
    assert_identical(resumed.schedule.state_dict(), straight.schedule.state_dict(), "schedule")
    assert resumed.history == straight.history
    assert resumed.batches.bit_generator.state == straight.batches.bit_generator.state
    assert STATE.rng.bit_generator.state == straight_engine_rng


def test_without_the_engine_generator_dropout_draws_other_masks(tmp_path):
    """The check above is not vacuous: restore everything but the generator dropout uses,
    and the weights part ways."""
    straight = trained_for(10)
    path = trained_for(5).save(tmp_path / "run.npz", epoch=5)
    resumed = Run(seed=99)
    load_checkpoint(
        path, resumed.model, resumed.optimizer, resumed.schedule, rngs={"batches": resumed.batches}
    )
    for _ in range(5):
        resumed.epoch()
    assert not np.array_equal(resumed.model[0].weight.data, straight.model[0].weight.data)


def test_round_trip_restores_every_kind_of_state(tmp_path):
    saved = trained_for(2)
    path = saved.save(tmp_path / "run.npz", epoch=2)
    fresh = Run(seed=7)
    info = load_checkpoint(path, fresh.model, fresh.optimizer, fresh.schedule, rngs=fresh.rngs())

    batch_norm = fresh.model[1]
    assert batch_norm.num_batches_tracked.dtype == np.int64
    assert int(batch_norm.num_batches_tracked) == 8
    np.testing.assert_array_equal(batch_norm.running_var, saved.model[1].running_var)
    for group in fresh.optimizer.param_groups:
        assert group["betas"] == (0.8, 0.99) and isinstance(group["betas"], tuple)
    assert fresh.optimizer.param_groups[0]["weight_decay"] == 1e-3
    first = fresh.optimizer.state[fresh.model[0].weight]
    assert first["step"] == 8 and isinstance(first["step"], int)
    np.testing.assert_array_equal(
        first["exp_avg_sq"], saved.optimizer.state[saved.model[0].weight]["exp_avg_sq"]
    )
    assert fresh.schedule.last_epoch == 8
    assert fresh.schedule.after.milestones == Counter({10: 1, 20: 2})
    assert fresh.optimizer.param_groups[0]["lr"] == saved.optimizer.param_groups[0]["lr"]
    assert (info.epoch, info.step, info.optimizer, info.schedule) == (2, 8, "Adam", "LinearWarmup")
    assert info.rngs == ("engine", "batches")
    assert checkpoint_info(path) == info


def test_the_file_is_a_plain_npz_with_a_json_index(tmp_path):
    path = trained_for(1).save(tmp_path / "run", epoch=1)
    assert path == tmp_path / "run" and path.exists()  # no suffix added
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no temporary file left
    with np.load(path, allow_pickle=False) as archive:
        meta = json.loads(archive["__meta__"].tobytes())
        assert meta["format"] == "topograd-checkpoint" and meta["version"] == 1
        assert meta["arrays"]["model/1.running_mean"] == {"shape": [16], "dtype": "<f8"}
        assert meta["arrays"]["model/1.num_batches_tracked"] == {"shape": [], "dtype": "<i8"}
        assert "optimizer/state/0/exp_avg" in archive.files
        assert meta["optimizer"]["state"]["param_groups"][0]["betas"] == {
            "__tg__": "tuple",
            "items": [0.8, 0.99],
        }


def test_extra_keeps_its_types(tmp_path):
    extra = {
        "history": {"loss": [1.5, 0.25, float("nan"), float("inf")]},
        "pair": (1, 2.5, ("nested",)),
        "by_epoch": {1: "one", 2: "two"},
        "counts": Counter({3: 2}),
        "scalar": np.float32(0.1),
        "array": np.arange(6, dtype=np.int16).reshape(2, 3),
        "big": 2**100,
        "flag": True,
        "none": None,
        "looks_tagged": {"__tg__": "tuple", "items": []},
    }
    model = nn.Linear(2, 2)
    save_checkpoint(tmp_path / "x.npz", model, extra=extra)
    back = load_checkpoint(tmp_path / "x.npz", model).extra
    loss = back["history"]["loss"]
    assert loss[:2] == [1.5, 0.25] and math.isnan(loss[2]) and loss[3] == math.inf
    del extra["history"], back["history"]
    assert_identical(back, extra, "extra")


def test_an_unstorable_extra_is_refused_before_anything_is_written(tmp_path):
    model = nn.Linear(2, 2)
    path = save_checkpoint(tmp_path / "x.npz", model, epoch=1)
    before = path.read_bytes()
    with pytest.raises(TypeError, match=r"builtin_function_or_method at 'extra/callback'"):
        save_checkpoint(path, model, epoch=2, extra={"callback": print})
    with pytest.raises(TypeError, match="object array"):
        save_checkpoint(path, model, extra=np.array([None]))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["x.npz"]


# --- misfits are refused, and change nothing ----------------------------------------------------
class Net(nn.Module):
    def __init__(self, hidden=8, head=False):
        super().__init__()
        self.body = nn.Linear(FEATURES, hidden)
        if head:
            self.head = nn.Linear(hidden, CLASSES)


def refused(path, model, *args, **kwargs):
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path, model, *args, **kwargs)
    return str(caught.value)


def test_a_different_shape_is_refused_with_both_shapes(tmp_path):
    path = save_checkpoint(tmp_path / "c.npz", Net(hidden=8))
    message = refused(path, Net(hidden=6))
    assert "body.weight: checkpoint shape (4, 8) != model shape (4, 6)" in message
    assert "body.bias: checkpoint shape (8,) != model shape (6,)" in message


def test_missing_and_unexpected_keys_are_named(tmp_path):
    small = save_checkpoint(tmp_path / "small.npz", Net())
    big = save_checkpoint(tmp_path / "big.npz", Net(head=True))
    assert "missing keys (in the model, not in the checkpoint): head.bias, head.weight" in refused(
        small, Net(head=True)
    )
    assert "unexpected keys (in the checkpoint, not in the model): head.bias, head.weight" in (
        refused(big, Net())
    )


def test_a_failed_load_changes_nothing(tmp_path):
    source = trained_for(1)
    path = source.save(tmp_path / "run.npz", epoch=1)
    target = Run(seed=5)
    target.epoch()
    before = (
        target.model.state_dict(),
        target.optimizer.state_dict(),
        target.schedule.state_dict(),
        STATE.rng.bit_generator.state,
    )
    # The model fits; the optimizer does not (one group fewer), nor does the generator list.
    wrong = Adam(target.model.parameters(), lr=0.01)
    message = refused(path, target.model, wrong, target.schedule, rngs={"absent": STATE.rng})
    assert "the checkpoint has 2 parameter groups, Adam has 1" in message
    assert "no random generator state named 'absent' (saved: engine, batches)" in message
    after = (
        target.model.state_dict(),
        target.optimizer.state_dict(),
        target.schedule.state_dict(),
        STATE.rng.bit_generator.state,
    )
    assert_identical(after, before, "after a refused load")


def test_other_optimizers_schedules_and_generators_are_refused(tmp_path):
    model = Net()
    adam = Adam(model.parameters())
    path = save_checkpoint(tmp_path / "c.npz", model, adam, CosineAnnealingLR(adam, T_max=5))
    sgd = SGD(model.parameters(), lr=0.1)
    assert "the checkpoint holds Adam state, the optimizer is SGD" in refused(path, model, sgd)
    other = MultiStepLR(adam, milestones=[2])
    assert "holds CosineAnnealingLR state, the schedule is MultiStepLR" in refused(
        path, model, adam, other
    )
    mersenne = np.random.Generator(np.random.MT19937(0))
    assert "does not fit a MT19937" in refused(path, model, rngs={"engine": mersenne})
    bare = save_checkpoint(tmp_path / "bare.npz", model)
    assert "holds no optimizer state to load into Adam" in refused(bare, model, adam)
    split = Adam([{"params": [model.body.weight]}, {"params": [model.body.bias]}])
    two_groups = save_checkpoint(tmp_path / "two.npz", model, split)
    merged = Adam([{"params": [model.body.weight, model.body.bias]}, {"params": []}])
    assert "group 0: the checkpoint has 1 parameters, Adam has 2" in refused(
        two_groups, model, merged
    )


def test_the_default_restores_the_engine_generator_and_asks_for_no_other(tmp_path):
    model = Net()
    manual_seed(3)
    path = save_checkpoint(tmp_path / "c.npz", model)
    expected = STATE.rng.random(4)
    manual_seed(4)
    load_checkpoint(path, model)
    np.testing.assert_array_equal(STATE.rng.random(4), expected)
    without = save_checkpoint(tmp_path / "none.npz", model, rngs={})
    load_checkpoint(without, model)  # nothing saved, nothing asked for
    assert "no random generator state named 'engine'" in refused(
        without, model, rngs={"engine": STATE.rng}
    )


# --- damaged and foreign files --------------------------------------------------------------------
@pytest.fixture
def good(tmp_path):
    """A valid checkpoint's bytes and the model it fits."""
    model = Net(hidden=64, head=True)
    path = save_checkpoint(tmp_path / "good.npz", model, Adam(model.parameters()), epoch=3)
    return path.read_bytes(), model


@pytest.mark.parametrize("fraction", [0.0, 0.0001, 0.01, 0.5, 0.9, 0.999])
def test_a_truncated_file_is_refused(tmp_path, good, fraction):
    data, model = good
    cut = tmp_path / "cut.npz"
    cut.write_bytes(data[: int(len(data) * fraction)])
    assert "truncated or corrupt" in refused(cut, model)


def test_a_flipped_byte_inside_an_array_is_refused(tmp_path, good):
    data, model = good
    damaged = bytearray(data)
    damaged[len(data) // 2] ^= 0xFF
    path = tmp_path / "flipped.npz"
    path.write_bytes(bytes(damaged))
    assert "truncated or corrupt" in refused(path, model)


def test_foreign_files_are_not_topograd_checkpoints(tmp_path, good):
    _, model = good
    noise = tmp_path / "noise.npz"
    noise.write_bytes(np.random.default_rng(0).bytes(5000))
    text = tmp_path / "notes.txt"
    text.write_text("epoch 5, loss 0.1\n")
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, weight=np.ones(3))
    array = tmp_path / "array.npy"
    np.save(array, np.ones(3))
    plain_zip = tmp_path / "plain.zip"
    with zipfile.ZipFile(plain_zip, "w") as archive:
        archive.writestr("readme.txt", "hello")
    for path in (noise, text, foreign, array, plain_zip):
        assert "not a topograd checkpoint" in refused(path, model), path.name


def trap_sprung_marks():
    """Would run only if a checkpoint were unpickled."""
    UNPICKLED.append(True)


UNPICKLED = []


class Trap:
    def __reduce__(self):
        return trap_sprung_marks, ()


@pytest.mark.parametrize("key", ["model/body.weight", "__meta__"])
def test_a_pickled_object_array_is_never_unpickled(tmp_path, good, key):
    _, model = good
    original = tmp_path / "good.npz"
    with np.load(original, allow_pickle=False) as archive:
        members = {name: archive[name] for name in archive.files}
    members[key] = np.array([Trap()], dtype=object)
    evil = tmp_path / "evil.npz"
    np.savez(evil, allow_pickle=True, **members)
    before = model.state_dict()
    assert "pickled object array" in refused(evil, model)
    assert UNPICKLED == []
    assert_identical(model.state_dict(), before)


# --- a save killed midway leaves the previous checkpoint -----------------------------------------
def run_child(script, *args, **popen):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *map(str, args)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        **popen,
    )


KILLED_INSIDE_THE_WRITE = """
    import os, signal, sys
    import numpy as np
    import numpy.lib.format as npy_format
    from topograd import manual_seed, nn
    from topograd.train import save_checkpoint

    path, expected = sys.argv[1:]
    manual_seed(0)
    model = nn.Linear(1000, 500)
    save_checkpoint(path, model, epoch=1)
    np.save(expected, model.weight.data)

    write_array = npy_format.write_array
    def write_half_then_die(fid, array, *args, **kwargs):
        if array.nbytes >= 1_000_000:
            fid.write(array.tobytes()[: array.nbytes // 2])
            fid.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return write_array(fid, array, *args, **kwargs)
    npy_format.write_array = write_half_then_die

    model.weight.data = np.full((1000, 500), 7.0)
    save_checkpoint(path, model, epoch=2)
    print("the save finished: the patched write was never reached")
"""


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX")
def test_sigkill_inside_the_write_leaves_the_previous_checkpoint(tmp_path):
    path, expected = tmp_path / "run.npz", tmp_path / "expected.npy"
    child = run_child(KILLED_INSIDE_THE_WRITE, path, expected)
    output, _ = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL, output
    strays = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(strays) == 1 and strays[0].stat().st_size > 1_000_000  # half written, then killed

    model = nn.Linear(1000, 500)
    assert load_checkpoint(path, model).epoch == 1
    np.testing.assert_array_equal(model.weight.data, np.load(expected))

    save_checkpoint(path, model, epoch=3)  # the next save clears the dead process's file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["expected.npy", "run.npz"]


SAVING_IN_A_LOOP = """
    import sys
    from topograd import nn
    from topograd.train import save_checkpoint

    path = sys.argv[1]
    model = nn.Linear(1000, 1000)
    epoch = 0
    while True:
        epoch += 1
        model.weight.data[...] = epoch
        model.bias.data[...] = epoch
        save_checkpoint(path, model, epoch=epoch)
        if epoch == 1:
            print("saved", flush=True)
"""


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX")
def test_sigkill_at_any_moment_leaves_a_whole_checkpoint(tmp_path):
    """A child saves 8 MB checkpoints back to back and is killed from outside, wherever it
    is: the file at the path is always one whole save (weights equal to its epoch)."""
    path = tmp_path / "run.npz"
    child = run_child(SAVING_IN_A_LOOP, path)
    assert child.stdout.readline().strip() == "saved"
    time.sleep(0.3)
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL

    model = nn.Linear(1000, 1000)
    epoch = load_checkpoint(path, model).epoch
    assert epoch >= 1
    assert np.all(model.weight.data == epoch) and np.all(model.bias.data == epoch)
    assert len([p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]) <= 1
