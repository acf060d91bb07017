"""The optimizer sample runs (with a small step cap), prints its table and writes real PNGs."""

import runpy
from pathlib import Path

import pytest

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "optimizers.py"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def sample():
    return runpy.run_path(str(SAMPLE))


def test_sample_writes_its_pictures_and_table(sample, tmp_path, capsys):
    results, written = sample["main"](["--out", str(tmp_path), "--steps", "400"])
    names = {"optimizers.png", "optimizers_quadratic.png", "optimizers_rosenbrock.png"}
    assert {path.name for path in written} == names
    for path in written:
        assert path.parent == tmp_path
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        assert path.stat().st_size > 20_000  # a drawn figure, not an empty canvas
    expected = ["SGD", "momentum", "Nesterov", "RMSprop", "RMSprop+momentum", "Adam", "AMSGrad"]
    assert [run.label for run in results["quadratic"]] == expected
    assert all(run.steps_to_tol is not None for run in results["quadratic"])  # all under 400
    assert all(len(run.losses) <= 401 for run in results["rosenbrock"])
    table = capsys.readouterr().out
    assert "steps to 1e-6" in table and "AMSGrad" in table


def test_sample_rejects_a_step_cap_below_one(sample, tmp_path):
    with pytest.raises(SystemExit) as stop:
        sample["main"](["--out", str(tmp_path), "--steps", "0"])
    assert stop.value.code == 2
