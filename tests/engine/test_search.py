"""Hyperparameter search: distributions, random vs grid, coarse to fine, failed trials, output."""

import csv
import math

import numpy as np
import pytest
from topograd.engine.train.search import (
    Choice,
    IntUniform,
    LogUniform,
    SearchResult,
    TrialResult,
    Uniform,
    coarse_to_fine,
    fit_objective,
    grid_search,
    narrow_space,
    random_search,
)

from topograd import nn
from topograd.data import make_moons, split
from topograd.optim import SGD
from topograd.train import History

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def lr_objective(params):
    """A known function of log10(lr): best at lr = 10**-2.5, a parabola in decades."""
    return -((math.log10(params["lr"]) + 2.5) ** 2)


# --- distributions -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "dist",
    [
        Uniform(-2.0, 3.0),
        LogUniform(1e-6, 1e-1),
        IntUniform(3, 9),
        IntUniform(16, 1024, log=True),
        Choice(("relu", "tanh", "elu")),
    ],
)
def test_samples_stay_within_bounds(dist):
    rng = np.random.default_rng(0)
    values = [dist.sample(rng) for _ in range(3000)]
    assert all(dist.contains(v) for v in values)
    if isinstance(dist, IntUniform):
        assert all(isinstance(v, int) for v in values)
        if not dist.log:  # the end values are reachable (1024 of 16..1024 in log is 0.02%)
            assert set(values) == set(range(dist.low, dist.high + 1))


def test_log_uniform_is_uniform_in_log_space():
    """Kolmogorov-Smirnov against the uniform law of log10(value) on [-5, -1], and every
    decade getting a quarter of the draws (a plain Uniform puts ~90% in the top decade)."""
    rng = np.random.default_rng(1)
    n = 20_000
    exponents = np.sort(np.log10([LogUniform(1e-5, 1e-1).sample(rng) for _ in range(n)]))
    cdf = (exponents + 5) / 4
    ks = max(np.max(np.arange(1, n + 1) / n - cdf), np.max(cdf - np.arange(n) / n))
    assert ks < 1.63 / math.sqrt(n)  # the 1% critical value
    per_decade = np.histogram(exponents, bins=[-5, -4, -3, -2, -1])[0] / n
    np.testing.assert_allclose(per_decade, 0.25, atol=0.015)
    plain = np.array([Uniform(1e-5, 1e-1).sample(rng) for _ in range(n)])
    assert np.mean(plain > 1e-2) > 0.88


def test_int_uniform_gives_the_end_values_their_full_share():
    rng = np.random.default_rng(2)
    counts = np.bincount([IntUniform(0, 4).sample(rng) for _ in range(10_000)], minlength=5)
    np.testing.assert_allclose(counts / 10_000, 0.2, atol=0.02)


def test_grids_are_evenly_spaced_in_search_coordinates():
    assert LogUniform(1e-4, 1.0).grid(5) == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    assert Uniform(0.0, 1.0).grid(3) == pytest.approx([0.0, 0.5, 1.0])
    assert IntUniform(1, 3).grid(5) == [1, 2, 3]  # repeats removed
    assert Choice(("a", "b")).grid(7) == ["a", "b"]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: LogUniform(0.0, 1.0), "must be > 0"),
        (lambda: Uniform(2.0, 1.0), "low < high"),
        (lambda: Uniform(0.0, math.inf), "finite"),
        (lambda: IntUniform(1.5, 3), "integer"),
        (lambda: Choice(()), "at least one option"),
    ],
)
def test_bad_distributions_are_refused(build, message):
    with pytest.raises((ValueError, TypeError), match=message):
        build()


def test_a_space_entry_must_be_a_distribution():
    with pytest.raises(TypeError, match="'lr' must be Uniform"):
        random_search({"lr": [0.1, 0.01]}, lr_objective, trials=3)


# --- searching ---------------------------------------------------------------------------


SPACE = {
    "lr": LogUniform(1e-6, 1.0),
    "dropout": Uniform(0.0, 0.8),
    "hidden": IntUniform(16, 256, log=True),
    "activation": Choice(("relu", "tanh")),
}


def test_searches_repeat_with_their_seed():
    def params(result):
        return [t.params for t in result.trials]

    first = random_search(SPACE, lr_objective, trials=12, seed=5)
    assert params(first) == params(random_search(SPACE, lr_objective, trials=12, seed=5))
    assert params(first) != params(random_search(SPACE, lr_objective, trials=12, seed=6))
    staged = coarse_to_fine(SPACE, lr_objective, 8, seed=5)
    again = coarse_to_fine(SPACE, lr_objective, 8, seed=5)
    assert params(staged) == params(again)
    assert staged.spaces == again.spaces


def test_random_search_finds_a_good_learning_rate():
    result = random_search({"lr": LogUniform(1e-6, 1.0)}, lr_objective, trials=30, seed=0)
    assert abs(math.log10(result.best_params["lr"]) + 2.5) < 0.3
    assert result.ranked()[0] is result.best
    values = [t.value for t in result.ranked()]
    assert values == sorted(values, reverse=True)


def test_minimize_ranks_the_lowest_value_first():
    result = random_search(
        {"lr": LogUniform(1e-6, 1.0)}, lambda p: -lr_objective(p), 20, minimize=True
    )
    assert result.best.value == min(t.value for t in result.trials)


def test_coarse_to_fine_narrows_around_the_first_stage_best():
    result = coarse_to_fine(SPACE, lr_objective, trials_per_stage=20, stages=3, seed=3)
    assert [len(s) for s in result.spaces] == [4, 4, 4]
    assert [sum(t.stage == s for t in result.trials) for s in range(3)] == [20, 20, 20]
    for stage in (1, 2):
        before, after = result.spaces[stage - 1], result.spaces[stage]
        best = result.ranked(stage - 1)[0]
        for name, dist in after.items():
            assert dist.contains(best.params[name]), (stage, name)
            if name == "activation":
                assert set(dist.options) <= set(before[name].options)
                continue
            assert before[name].low <= dist.low and dist.high <= before[name].high
            if isinstance(dist, LogUniform):  # narrower in decades, not in absolute terms
                width = math.log(dist.high / dist.low)
                assert width == pytest.approx(0.5 * math.log(before[name].high / before[name].low))
            elif isinstance(dist, Uniform):
                assert dist.high - dist.low == pytest.approx(
                    0.5 * (before[name].high - before[name].low)
                )
            else:
                assert dist.high - dist.low < before[name].high - before[name].low
        assert all(
            after[n].contains(t.params[n]) for t in result.trials if t.stage == stage for n in after
        )
    # the later stages spend their trials near the optimum
    stage_error = [
        np.median([abs(math.log10(t.params["lr"]) + 2.5) for t in result.trials if t.stage == s])
        for s in range(3)
    ]
    assert stage_error[2] < stage_error[1] < stage_error[0]
    assert abs(math.log10(result.best_params["lr"]) + 2.5) < 0.1


def test_narrowing_stays_inside_when_the_best_sits_at_an_edge():
    space = {"lr": LogUniform(1e-4, 1.0), "p": Uniform(0.0, 1.0)}
    best = random_search(space, lambda p: 0.0, trials=1).trials
    best[0].params.update(lr=1.0, p=0.0)
    narrowed = narrow_space(space, best, shrink=0.25)
    assert narrowed["lr"].high == pytest.approx(1.0) and narrowed["lr"].low == pytest.approx(0.1)
    assert narrowed["p"].low == 0.0 and narrowed["p"].high == pytest.approx(0.25)


def test_random_search_explores_the_important_parameter_better_than_a_grid():
    """The notes' picture: f depends on `important` sharply and on `unimportant` barely. With
    16 trials a 4 x 4 grid tries 4 values of the important parameter, random search 16, and
    so it usually lands closer to the peak."""

    def objective(params):
        return (
            math.exp(-(((params["important"] - 0.37) / 0.05) ** 2)) + 0.01 * params["unimportant"]
        )

    space = {"important": Uniform(0.0, 1.0), "unimportant": Uniform(0.0, 1.0)}
    grid = grid_search({name: dist.grid(4) for name, dist in space.items()}, objective)
    assert len(grid.trials) == 16
    assert grid.distinct_values("important") == 4
    wins = 0
    for seed in range(20):
        found = random_search(space, objective, trials=16, seed=seed)
        assert found.distinct_values("important") == 16
        wins += found.best.value > grid.best.value
    assert wins >= 14


# --- failed trials -----------------------------------------------------------------------


def test_failed_trials_are_recorded_and_ranked_last():
    def objective(params):
        if params["lr"] > 0.1:
            return TrialResult(math.nan, status="exploded", reason="loss 7.1 > 3 x 2.3")
        if params["lr"] < 1e-5:
            raise FloatingPointError("overflow in exp")
        if 1e-4 < params["lr"] < 2e-4:
            return math.inf
        return lr_objective(params)

    result = random_search({"lr": LogUniform(1e-6, 1.0)}, objective, trials=40, seed=0)
    statuses = {t.result.status for t in result.failed}
    assert statuses >= {"exploded", "error"}
    ranked = result.ranked()
    finished = sum(t.result.ok for t in result.trials)
    assert all(t.result.ok for t in ranked[:finished])
    assert not any(t.result.ok for t in ranked[finished:])
    error = next(t for t in result.failed if t.result.status == "error")
    assert "FloatingPointError: overflow in exp" in error.result.reason
    assert result.best.result.ok


def test_every_trial_failing_leaves_no_best_and_stops_coarse_to_fine():
    def explode(_):
        return TrialResult(math.nan, status="exploded", reason="always")

    result = coarse_to_fine({"lr": LogUniform(1e-3, 1.0)}, explode, 4, stages=3)
    assert len(result.trials) == 4 and len(result.spaces) == 1
    with pytest.raises(ValueError, match="no trial finished"):
        _ = result.best


def test_a_training_trial_that_explodes_is_cut_short_and_recorded():
    """Real trials through fit: a sane learning rate trains, an absurd one trips the
    explosion guard after a few steps and is recorded with fit's reason, ranked last."""
    parts = split(make_moons(n=200, noise=0.1, seed=0), val=0.2, test=0.0, seed=0)

    def make_model(params):
        return nn.Sequential(nn.Linear(2, 16, init="he"), nn.ReLU(), nn.Linear(16, 2))

    def make_optimizer(model, params):
        return SGD(model.parameters(), lr=params["lr"], momentum=0.9)

    objective = fit_objective(
        make_model,
        make_optimizer,
        parts.train,
        parts.val,
        epochs=4,
        batch_size=16,
        track_stats=False,
    )
    result = grid_search({"lr": [1e4, 0.1]}, objective)
    exploded, trained = result.trials
    assert exploded.result.status in ("exploded", "non-finite loss")
    assert exploded.result.reason and exploded.result.epochs < 4
    assert trained.result.ok and trained.result.epochs == 4
    assert trained.result.val_acc == trained.value > 0.8
    assert result.ranked() == [trained, exploded]


def test_trial_from_history_reads_the_kept_epoch_and_the_stop_reason():
    history = History(
        epochs=[1, 2, 3], val_acc=[0.5, 0.8, 0.7], val_loss=[1.0, 0.5, 0.6], best_epoch=2
    )
    finished = TrialResult.from_history(history)
    assert (finished.value, finished.val_loss, finished.status) == (0.7, 0.6, "ok")
    history.stopped, history.stop_message = "early stopping", "no better for 1 epoch"
    early = TrialResult.from_history(history)  # fit restored epoch 2's weights
    assert (early.value, early.val_acc, early.status, early.reason) == (0.8, 0.8, "ok", "")
    assert TrialResult.from_history(history, "val_loss").value == 0.5
    history.stopped, history.stop_message = "exploded", "loss 9.1 > 3 x 2.3"
    exploded = TrialResult.from_history(history)
    assert (exploded.status, exploded.reason, exploded.ok) == (
        "exploded",
        "loss 9.1 > 3 x 2.3",
        False,
    )
    with pytest.raises(ValueError, match="metric must be"):
        TrialResult.from_history(history, "accuracy")


# --- output ------------------------------------------------------------------------------


def test_results_table_csv_and_plot(tmp_path):
    def objective(params):
        if params["lr"] > 0.01:
            return TrialResult(math.nan, status="exploded", reason="loss grew 3x")
        value = lr_objective(params)
        return TrialResult(value, val_loss=-value, val_acc=1 + value / 100)

    result = coarse_to_fine(SPACE, objective, trials_per_stage=10, seed=0)
    path = result.write_csv(tmp_path / "search.csv")
    with path.open(newline="") as file:
        rows = list(csv.DictReader(file))
    expected = ["trial", "stage", "lr", "dropout", "hidden", "activation"]
    expected += ["value", "val_loss", "val_acc", "status", "reason", "seconds"]
    assert list(rows[0]) == expected
    assert len(rows) == 20
    assert [int(r["trial"]) for r in rows] == list(range(20))
    assert {r["stage"] for r in rows} == {"0", "1"}
    exploded = [r for r in rows if r["status"] == "exploded"]
    assert exploded and all(r["reason"] == "loss grew 3x" for r in exploded)
    first = result.trials[0]
    assert float(rows[0]["lr"]) == first.params["lr"]  # full precision
    text = result.table(limit=3)
    assert "exploded: loss grew 3x" in text and text.splitlines()[0].split()[:3] == [
        "rank",
        "trial",
        "stage",
    ]
    png = result.plot(tmp_path / "search.png")
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    assert png.stat().st_size > 10_000
    with pytest.raises(ValueError, match="unknown parameter"):
        result.plot(tmp_path / "x.png", param="momentum")
    grid = grid_search({"lr": LogUniform(1e-5, 1.0).grid(6), "p": [0.1, 0.5]}, lr_objective)
    grid_png = grid.plot(tmp_path / "grid.png", value_label="score")
    assert grid_png.read_bytes()[:8] == PNG_SIGNATURE


def test_coarse_to_fine_takes_one_objective_and_count_per_stage():
    calls = []

    def short(params):
        calls.append("short")
        return lr_objective(params)

    def long(params):
        calls.append("long")
        return lr_objective(params)

    result = coarse_to_fine({"lr": LogUniform(1e-6, 1.0)}, [short, long], [6, 3])
    assert calls == ["short"] * 6 + ["long"] * 3
    assert isinstance(result, SearchResult)
    with pytest.raises(ValueError, match="2 stages need 2 objectives"):
        coarse_to_fine({"lr": LogUniform(1e-6, 1.0)}, [short], 3)
