"""`topograd step FILE`: walk through the forward pass and then the backward pass, one node
per Enter, or all at once with `--all`. The events come from the engine's own stepper
(engine.Stepper over engine.Graph's steps, the executor that training runs), which also
steps back (`b`: the values shown are the ones computed then, not recomputed), and stops at
breakpoints (`break NAME`, `c`). `p NAME` prints a node's whole value and gradient. Commands
are read line by line from the terminal or a pipe; at the end of input the rest is shown.
"""

from __future__ import annotations

import difflib
import sys

import numpy as np
from topograd.dsl.commands.common import OK
from topograd.dsl.inspect import open_subject
from topograd.engine import Graph, StepEvent, Stepper
from topograd.engine.graph import shape_text

PHASES = ("forward", "backward", "both")

KEYS = """keys (type one and press Enter):
  Enter, n       the next step
  b              step back: undo the last step (the values are those computed then)
  c              continue to the next breakpoint, or to the end
  break NAME     stop when stepping reaches NAME: a node (`break n`, `break out.weight`) or a
                 layer (`break digits_mlp.0`, or `break 0`: stops where a pass enters it)
  break          list the breakpoints;  clear NAME  removes one (clear: all)
  p [NAME]       print a node's whole value and gradient with its shape (numpy's printing,
                 summarised past numpy's threshold); a layer's output for a layer; without
                 NAME, the current step's node
  p! [NAME]      the same, never summarised
  h, ?           this help
  q              quit"""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "step",
        help="step through the forward and backward passes in the terminal",
        description="Show the forward pass and then the backward pass one node at a time: "
        "Enter for the next node, b to step back, break NAME and c to run to a node or layer, "
        "p NAME to print a whole tensor, h for every key, q to quit (commands may come from a "
        "pipe; at the end of input the rest is shown). A network is stepped on its loss for a "
        "small batch of the training split; a graph with several outputs backpropagates from "
        "their sum (a tensor output counts as its sum).",
    )
    parser.add_argument("file", help="a model file (.tg)")
    parser.add_argument("--all", action="store_true", help="show every step without waiting")
    parser.add_argument(
        "--batch", type=int, default=4, metavar="N", help="examples in the batch (default 4)"
    )
    parser.add_argument(
        "--phase", choices=PHASES, default="both", help="which pass to show (default both)"
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help="after each step's line, print its whole value (and gradient), never summarised",
    )


def run(args) -> int:
    looked_at, code = open_subject(args.file, args.batch)
    if looked_at is None:
        return code
    graph, root_name = _stepped(looked_at)
    print(f"stepping {looked_at.title}")
    session = _Session(graph, root_name, args.phase, args.full)
    if args.all:
        session.show_rest()
        print(f"done: {session.counts()}")
        return OK
    if session.advance() is None:  # nothing to show at all
        print(f"done: {session.counts()}")
        return OK
    while True:
        line = _ask(session.stepper.finished)
        if line is None:  # end of input: show the rest
            session.show_rest()
            print(f"done: {session.counts()}")
            return OK
        if not session.command(line.strip()):
            return OK


class _Session:
    """The terminal's cursor over the engine's Stepper: which steps are shown (`--phase`), the
    breakpoints, and the commands."""

    def __init__(self, graph: Graph, root_name: str, phase: str, full: bool):
        self.graph, self.root_name, self.phase, self.full = graph, root_name, phase, full
        self.stepper = Stepper(graph)
        self.forward_total = len(graph.op_nodes)
        self.breakpoints: dict[str, tuple[str, set[int]]] = {}  # name -> (kind, node ids)
        self.nodes, self.layers = _names(graph)
        self.told_no_backward = False

    # --- moving ------------------------------------------------------------------------------
    def shown(self, event: StepEvent) -> bool:
        return self.phase == "both" or event.phase == self.phase

    def advance(self) -> StepEvent | None:
        """Step to the next shown step and print it; None at the end."""
        while (event := self.stepper.step()) is not None:
            if self.shown(event):
                self.show(event)
                return event
        self._no_backward()
        return None

    def show_rest(self) -> None:
        while self.advance() is not None:
            pass

    def back(self) -> None:
        """Undo steps until the previous shown step is the current one (or none is)."""
        undone = self.stepper.step_back()
        while undone is not None and not self.shown(undone):
            undone = self.stepper.step_back()
        while (current := self.stepper.current) is not None and not self.shown(current):
            self.stepper.step_back()
        if undone is None:
            print("at the start: nothing to step back")
        elif self.stepper.current is None:
            print("back at the start: no step done")
        else:
            print(f"back to: {describe(self.graph, self.stepper.current, self.forward_total)}")

    def resume(self) -> None:
        """`c`: step on until a breakpoint is reached (that step is printed) or the end."""
        previous, passed, last = self.stepper.current, 0, None
        while (event := self.stepper.step()) is not None:
            if self.shown(event):
                hit = self._hit(event, previous)
                if hit is not None:
                    print(f"({_steps(passed)} passed) breakpoint {hit}:")
                    self.show(event)
                    return
                passed, last = passed + 1, event
            previous = event
        self._no_backward()
        if last is not None:
            print(f"({_steps(passed - 1)} passed) the last step:")
            self.show(last)
        print("the end: no breakpoint reached; Enter ends, b steps back")

    def _hit(self, event: StepEvent, previous: StepEvent | None) -> str | None:
        """The breakpoint `event` reaches: a node's, or a layer's entered from outside it."""
        node = event.node.id
        for name, (kind, ids) in self.breakpoints.items():
            if node not in ids:
                continue
            if kind == "node" or previous is None or previous.node.id not in ids:
                return name
            if previous.phase != event.phase:
                return name
        return None

    def _no_backward(self) -> None:
        if self.phase != "forward" and not self.stepper.has_backward and not self.told_no_backward:
            print(f"no backward pass: {self.root_name} depends on no parameter")
            self.told_no_backward = True

    # --- printing ----------------------------------------------------------------------------
    def show(self, event: StepEvent) -> None:
        if event.phase == "backward" and event.index == 0:
            root = self.graph.outputs[0]
            if root.size == 1:
                print(f"backward from {self.root_name}")
            else:
                print(f"backward from the sum of {self.root_name} (shape {shape_text(root.shape)})")
        print(describe(self.graph, event, self.forward_total))
        if self.full and np.size(event.value) > 1:
            print(_array("value", event.value, whole=True))
            if event.phase == "backward":
                print(_array("grad", event.grad, whole=True))

    def print_node(self, name: str, whole: bool) -> None:
        """`p NAME`: the node's (or the layer's output's) value and gradient so far."""
        if not name:
            current = self.stepper.current
            if current is None:
                print("no step done yet: p NAME prints a node by its name")
                return
            node = current.node
        else:
            node = self._node(name)
            if node is None:
                return
        info = self.graph.info(node)
        where = f" in {info.layer}" + (f" ({info.layer_kind})" if info.layer_kind else "")
        title = info.name or f"#{info.id}"
        print(f"{title}: {info.op}{where if info.layer else ''}, shape {shape_text(info.shape)}")
        value = self.stepper.value_of(node.id)
        if value is None:
            print("value: not computed yet (its forward step is ahead)")
        else:
            print(_array("value", value, whole))
        if not node.requires_grad or not self.stepper.has_backward:
            print("grad: none (it takes no gradient)")
            return
        grad = self.stepper.grad_of(node.id)
        if grad is None:
            print("grad: not reached yet (its backward step is ahead)")
        else:
            print(_array("grad", grad, whole))

    def _node(self, name: str):
        """The node named `name`, or a layer's output; None after saying why not."""
        if name in self.nodes:
            return self.nodes[name]
        layer = self._layer(name)
        if layer is None:
            return None
        forward = [n for n in self.graph.op_nodes if n.id in self.layers[layer]]
        return forward[-1] if forward else self.graph[next(iter(self.layers[layer]))]

    def _layer(self, name: str) -> str | None:
        if name in self.layers:
            return name
        found = [layer for layer in self.layers if layer.split(".", 1)[-1] == name]
        if len(found) == 1:
            return found[0]
        short = {layer.split(".", 1)[-1] for layer in self.layers}
        known = sorted({*self.nodes, *self.layers, *short})
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        listed = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
        print(f"no node or layer named {name!r}{hint} (names: {listed})")
        return None

    # --- commands ----------------------------------------------------------------------------
    def command(self, line: str) -> bool:
        """Do what one input line says; False when stepping is over."""
        word, _, rest = line.partition(" ")
        word, rest = word.lower(), rest.strip()
        if word in ("", "n", "next"):
            if self.advance() is None:
                print(f"done: {self.counts()}")
                return False
        elif word in ("q", "quit", "exit"):
            print(f"stopped after {self.counts()}")
            return False
        elif word in ("b", "back") and not rest:
            self.back()
        elif word in ("c", "continue"):
            self.resume()
        elif word == "break":
            self.set_breakpoint(rest)
        elif word == "clear":
            self.clear(rest)
        elif word in ("p", "p!", "print"):
            self.print_node(rest, whole=word == "p!")
        elif word in ("h", "?", "help"):
            print(KEYS)
        elif word == "b":
            print(f"b steps back; to stop at {rest}: break {rest}")
        else:
            print(f"unknown command {line!r} (h lists the keys)")
        return True

    def set_breakpoint(self, name: str) -> None:
        if not name:
            if not self.breakpoints:
                print("no breakpoints (break NAME sets one)")
            for label, (kind, _) in self.breakpoints.items():
                print(f"breakpoint {label} ({kind})")
            return
        if name in self.nodes:
            self.breakpoints[name] = ("node", {self.nodes[name].id})
        else:
            layer = self._layer(name)
            if layer is None:
                return
            self.breakpoints[name] = ("layer", set(self.layers[layer]))
        kind = self.breakpoints[name][0]
        print(f"breakpoint {name} ({kind}): c runs to it")

    def clear(self, name: str) -> None:
        if not name:
            self.breakpoints.clear()
            print("breakpoints cleared")
        elif self.breakpoints.pop(name, None) is None:
            print(f"no breakpoint {name!r}")
        else:
            print(f"breakpoint {name} cleared")

    def counts(self) -> str:
        done = [event.phase for event in self.stepper.done if self.shown(event)]
        return f"{done.count('forward')} forward steps, {done.count('backward')} backward steps"


def _steps(count: int) -> str:
    return f"{count} step" if count == 1 else f"{count} steps"


def _names(graph: Graph) -> tuple[dict, dict]:
    """The nodes by name (the first of a name), and each layer's node ids by its path."""
    nodes, layers = {}, {}
    for node in graph.nodes:
        info = graph.info(node)
        if info.name:
            nodes.setdefault(info.name, node)
        if info.layer:
            layers.setdefault(info.layer, set()).add(node.id)
    return nodes, layers


def _array(label: str, array, whole: bool) -> str:
    """`label = ...` with numpy's printing: summarised past its threshold unless `whole`."""
    array = np.asarray(array)
    threshold = sys.maxsize if whole else np.get_printoptions()["threshold"]
    text = np.array2string(array, threshold=threshold, separator=" ")
    if array.ndim == 0:
        return f"{label} = {text}"
    return f"{label} ({shape_text(array.shape)}) =\n{text}"


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


def _ask(at_end: bool) -> str | None:
    """The next line of input, or None at its end."""
    if sys.stdin.isatty():
        where = "Enter: end" if at_end else "Enter: next"
        print(f"[{where}, b: back, c: continue, p NAME: print, h: help, q: quit] ", end="")
        sys.stdout.flush()
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
