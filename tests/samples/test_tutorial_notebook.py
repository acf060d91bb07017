"""samples/tutorial.ipynb runs top to bottom in a real Jupyter kernel (nbclient), and what it
shows is checked: the graph pictures hold the neuron's names and numbers, the stepper widget
stopped where the notebook stepped it, the batch norms agree, dropout passes values through in
evaluation, and the digits train."""

from __future__ import annotations

import ast
import re
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("anywidget")

TUTORIAL = Path(__file__).resolve().parents[2] / "samples" / "tutorial.ipynb"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    notebook = nbformat.read(TUTORIAL, as_version=4)
    folder = tmp_path_factory.mktemp("tutorial")  # whatever it writes lands here
    client = nbclient.NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(folder)}},
        store_widget_state=True,
    )
    start = time.perf_counter()
    client.execute()
    print(f"tutorial executed in {time.perf_counter() - start:.1f} s")
    return notebook


def _code_cell(notebook, fragment: str):
    return next(c for c in notebook.cells if c.cell_type == "code" and fragment in c.source)


def _text(cell) -> str:
    parts = []
    for output in cell.outputs:
        if output.output_type == "stream":
            parts.append(output.text)
        elif "data" in output:
            parts.extend(str(value) for value in output.data.values())
    return "\n".join(parts)


def test_no_cell_failed(executed):
    errors = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in errors if o.output_type == "error"]


def test_the_neurons_numbers_and_its_picture(executed):
    printed = _text(_code_cell(executed, "graph.backward()"))
    assert "o = 0.7071" in printed
    assert "do/dx1 = -1.5000, do/dw1 = 1.0000, do/dx2 = 0.5000, do/dw2 = 0.0000" in printed
    picture = _code_cell(executed, "graph  # or tg.draw(o)").outputs[0].data["image/svg+xml"]
    for name in ("x1", "w1", "x2", "w2", "b", "n", "o"):
        assert f">{name}</text>" in picture
    for line in ("data 0.7071", "grad -1.5", "data 0.8814", "grad 0.5"):  # o, x1, n (tanh's input)
        assert line in picture


def test_the_widget_stopped_three_steps_into_the_backward_pass(executed):
    cell = _code_cell(executed, "StepperWidget(o)")
    view = next(o.data[WIDGET_VIEW] for o in cell.outputs if WIDGET_VIEW in o.get("data", {}))
    states = executed.metadata["widgets"][WIDGET_STATE]["state"]
    state = states[view["model_id"]]["state"]
    assert state["phase"] == "backward"
    forward_steps = 5  # mul, mul, add, add, tanh
    assert state["position"] == forward_steps + 3
    assert state["current"] >= 0 and "<svg" in state["svg"] and state["inspector"]


def test_the_module_shows_its_layers_and_parameter_counts(executed):
    shown = _text(_code_cell(executed, "mlp = tg.nn.Sequential"))
    assert "Linear" in shown and "Tanh" in shown
    assert "48" in shown and "34" in shown  # 2*16+16 and 16*2+2


def test_derived_and_fused_batch_norm_agree(executed):
    printed = _text(_code_cell(executed, "for fused in (False, True)"))
    differences = [float(d) for d in re.findall(r"largest difference (\S+)", printed)]
    assert len(differences) == 3 and max(differences) < 1e-10


def test_dropout_passes_values_through_in_evaluation(executed):
    printed = _text(_code_cell(executed, "drop = tg.nn.Dropout(0.5)"))
    train_line, eval_line = printed.strip().splitlines()
    assert set(ast.literal_eval(eval_line.split(":", 1)[1].strip())) == {1.0}
    assert set(ast.literal_eval(train_line.split(":", 1)[1].strip())) <= {0.0, 2.0}


def test_the_digits_train_and_the_history_shows_its_curves(executed):
    printed = _text(_code_cell(executed, "history = tg.fit("))
    accuracy = float(re.search(r"test accuracy (\S+)", printed).group(1))
    assert accuracy > 0.9
    shown = _text(executed.cells[-1])  # the History itself
    assert "<img" in shown or "<svg" in shown
