"""What would fail or go wrong during a run is found before it: a schedule's length follows the
run (and one that ends early is refused), and `check` refuses what `run` would. Truths: the
split sizes counted here, the cosine's closed form, and the run command's own refusal."""

from __future__ import annotations

import math

import pytest
from cli_helpers import run_cli
from topograd.dsl import DslBuildError, DslCheckError, Source, build, check, parse
from topograd.dsl.training import with_settings

FILE = """
data {{ dataset moons(n={n})  val 0.2  test 0.2 }}
network net {{ linear(8)  relu  linear }}
train {{ loss cross_entropy  optimizer sgd(lr=0.1)  schedule {schedule}  epochs 3  batch 16
        {extra} }}
"""


def spec_of(tmp_path, n=100, schedule="cosine", extra=""):
    text = FILE.format(n=n, schedule=schedule, extra=extra)
    path = tmp_path / "run.tg"
    path.write_text(text)
    source = Source(str(path), text)
    return check(parse(text, source.name), source), source


@pytest.mark.parametrize("epochs", [None, 7])
def test_a_cosine_without_t_max_anneals_over_the_whole_run(tmp_path, epochs):
    spec, source = spec_of(tmp_path)
    spec = with_settings(spec, epochs=epochs)
    built = build(spec, source)
    train_size = len(built.data.splits.train)
    steps = (epochs or 3) * math.ceil(train_size / 16)
    assert built.schedule.T_max == steps
    assert built.schedule.lr_at(steps)[0] == pytest.approx(0.0, abs=1e-15)
    assert built.schedule.lr_at(steps // 2)[0] == pytest.approx(0.05)


def test_after_a_warm_up_the_cosine_takes_the_rest_of_the_run(tmp_path):
    spec, source = spec_of(tmp_path, schedule="warmup(warmup_steps=4, after=cosine)")
    built = build(spec, source)
    steps = 3 * math.ceil(len(built.data.splits.train) / 16)
    assert built.schedule.after.T_max == steps - 4


def test_a_cosine_that_ends_before_the_run_is_refused_at_its_line(tmp_path, capsys):
    spec, source = spec_of(tmp_path, schedule="cosine(T_max=5)")
    with pytest.raises(DslBuildError) as raised:
        build(spec, source)
    (problem,) = raised.value.problems
    assert problem.pos.line == 4 and "climbs back up" in problem.message
    # `check` says so too, as `run` would
    captured = run_cli(["check", source.name], capsys, expected=2)
    assert "cosine(T_max=5) reaches its lowest lr after 5 of the run's 12 steps" in captured.err
    # a long enough one is fine
    spec, source = spec_of(tmp_path, schedule="cosine(T_max=12)")
    assert build(spec, source).schedule.T_max == 12  # 3 epochs x ceil(60 / 16) batches


def test_early_stopping_without_validation_data_is_a_check_error(tmp_path):
    text = FILE.format(n=100, schedule="cosine", extra="early_stopping 3").replace(
        "val 0.2", "val 0"
    )
    with pytest.raises(DslCheckError) as raised:
        check(parse(text, "es.tg"), Source("es.tg", text))
    (problem,) = raised.value.problems
    assert "early_stopping watches the validation loss" in problem.message
    assert problem.pos.line == 5
