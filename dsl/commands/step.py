"""`topograd step FILE`: walk through the forward pass and then the backward pass, one node
per Enter (`q` quits), or all at once with `--all`. The events come from the engine's own
stepper (engine.Graph.steps), the executor that training runs."""

from __future__ import annotations

import sys

import numpy as np
from topograd.dsl.commands.common import OK
from topograd.dsl.inspect import open_subject
from topograd.engine import Graph, StepEvent
from topograd.engine.graph import shape_text

PHASES = ("forward", "backward", "both")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "step",
        help="step through the forward and backward passes in the terminal",
        description="Show the forward pass and then the backward pass one node at a time: "
        "press Enter for the next node, q to quit (at the end of input the rest is shown). "
        "A network is stepped on its loss for a small batch of the training split; a graph "
        "with several outputs backpropagates from their sum (a tensor output counts as its sum).",
    )
    parser.add_argument("file", help="a model file (.tg)")
    parser.add_argument("--all", action="store_true", help="show every step without waiting")
    parser.add_argument(
        "--batch", type=int, default=4, metavar="N", help="examples in the batch (default 4)"
    )
    parser.add_argument(
        "--phase", choices=PHASES, default="both", help="which pass to show (default both)"
    )


def run(args) -> int:
    looked_at, code = open_subject(args.file, args.batch)
    if looked_at is None:
        return code
    graph, root_name = _stepped(looked_at)
    print(f"stepping {looked_at.title}")
    shown = {"forward": 0, "backward": 0}
    forward_total = len(graph.op_nodes)
    waiting = not args.all
    for event in _events(graph, root_name, args.phase):
        if args.phase != "both" and event.phase != args.phase:
            continue
        if waiting and sum(shown.values()) > 0:
            answer = _ask()
            if answer is None:  # end of input: show the rest
                waiting = False
            elif answer.strip().lower() in ("q", "quit"):
                print(f"stopped after {_counts(shown)}")
                return OK
        print(describe(graph, event, forward_total))
        shown[event.phase] += 1
    print(f"done: {_counts(shown)}")
    return OK


def _stepped(looked_at) -> tuple[Graph, str]:
    """The graph to step and what its backward pass starts from, in words.

    One output: the subject's graph, backward from that output. Several (a graph file):
    backward from their sum, as `topograd run` reports each output's gradients, so every
    leaf's gradient is the sum of all outputs' gradients (a scalar output seeded with 1, a
    tensor output with ones, i.e. its sum); the summing nodes are added after the outputs
    and named `sum of outputs`. Outputs that depend on no input or param take no part."""
    outputs = looked_at.outputs
    names = list(outputs)
    if len(names) == 1:
        return looked_at.graph(), names[0]
    taking = [name for name in names if outputs[name].requires_grad]
    if not taking:
        return looked_at.graph(), "the outputs"
    parts = [outputs[name] if outputs[name].size == 1 else outputs[name].sum() for name in taking]
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    words = " + ".join(n if outputs[n].size == 1 else f"sum({n})" for n in taking)
    if total is outputs[taking[0]]:  # one output needs gradients: backward from it alone
        rest = [t for name, t in outputs.items() if name != taking[0]]
        return Graph([total, *rest], roles=looked_at.roles), words
    total.name = "sum of outputs"
    graph = Graph([total, *outputs.values()], roles=looked_at.roles)
    return graph, f"the sum of the outputs {words}"


def _events(graph: Graph, root_name: str, phase: str):
    """The engine's events; the backward pass runs from the first output of `graph` (its sum
    if it is not a scalar), and is left out when nothing in it needs a gradient."""
    yield from graph.forward_steps()
    if phase == "forward":
        return
    root = graph.outputs[0]
    if not root.requires_grad:
        print(f"no backward pass: {root_name} depends on no parameter")
        return
    if root.size == 1:
        print(f"backward from {root_name}")
        yield from graph.backward_steps()
    else:
        print(f"backward from the sum of {root_name} (shape {shape_text(root.shape)})")
        yield from graph.backward_steps(np.ones(root.shape))


def _ask() -> str | None:
    """The next line of input, or None at its end."""
    if sys.stdin.isatty():
        print("[Enter: next, q: quit] ", end="", flush=True)
    line = sys.stdin.readline()
    return line if line else None


def describe(graph: Graph, event: StepEvent, forward_total: int) -> str:
    """One line for one event: number, phase, op and name, layer, shape, value (and the
    gradient going backward), and the op's formula (its VJP going backward)."""
    info = graph.info(event.node)
    number = event.index + 1
    step = f"{number}/{forward_total}" if event.phase == "forward" else str(number)
    parts = [f"{event.phase} {step:>5}", info.op]
    if info.name:
        parts.append(info.name)
    if info.layer:
        parts.append(f"in {info.layer}" + (f" ({info.layer_kind})" if info.layer_kind else ""))
    parts.append(f"shape {shape_text(info.shape)}")
    parts.append(f"value {summarize(event.value)}")
    if event.phase == "backward":
        parts.append(f"grad {summarize(event.grad)}")
        if info.vjp_formula:
            parts.append(f"vjp {info.vjp_formula}")
    elif info.formula:
        parts.append(f"formula {info.formula}")
    return "  ".join(parts)


def summarize(array) -> str:
    """A number for a scalar; mean, std, min and max for a tensor."""
    if array is None:
        return "none"
    array = np.asarray(array, dtype=np.float64)
    if array.size == 1:
        return f"{float(array.reshape(())):.6g}"
    return (
        f"mean {array.mean():.4g} std {array.std():.4g} min {array.min():.4g} max {array.max():.4g}"
    )


def _counts(shown: dict) -> str:
    return f"{shown['forward']} forward steps, {shown['backward']} backward steps"
