"""A graph of layers folded into the blocks a model file can say.

A chain of layers becomes the items of a Sequential. Where a value splits into branches,
the branches are followed to the step where they all meet again (a join):

- an `add` of two branches that share no step is a Residual: the longer branch is the body,
  the other the shortcut (none when it is the value itself, the identity);
- a `concat` of the value itself and one branch is a Concat block (`[x, body(x)]`);
- otherwise, when the branch is one chain and the join takes values from along it (a
  concat with the value second, an add of three), the chain's layers are items of the
  Sequential and the join is a Merge naming the earlier items by their labels.

Anything else (branches that cross, a join that takes a value from outside the block) is
refused, naming the node where the branches meet.

Items are labelled after the source node that made them where its name means something (a
PyTorch layer's path `layer1.0.conv1` as `layer1_0_conv1`, an ONNX node's name), so the
window, the stepper and the model file show the source's own names; a Merge's sources are
always labelled.
"""

from __future__ import annotations

from topograd.dsl.importers.common import LayerGraph, ModelImportError, Step, label
from topograd.engine import nn as enn


def structure(graph: LayerGraph, output: int) -> enn.Sequential:
    """The steps that lead to `output`, as nested engine modules."""
    return _Folder(graph, output).network()


class _Folder:
    def __init__(self, graph: LayerGraph, output: int):
        self.output = output
        self.steps = _needed(graph.steps, output)
        self.producer = {step.output: index for index, step in enumerate(self.steps)}
        self.consumers: dict[int, list[int]] = {}
        for index, step in enumerate(self.steps):
            for value in dict.fromkeys(step.inputs):
                self.consumers.setdefault(value, []).append(index)

    def network(self) -> enn.Sequential:
        return self.sequence(0, self.output, set(range(len(self.steps))))

    # --- one Sequential -------------------------------------------------------------------
    def sequence(self, start: int, end: int, region: set[int]) -> enn.Sequential:
        """The items that take `start` to `end`, using only the steps in `region`."""
        items = _Items()
        made: dict[int, int] = {}  # value -> index of the item of this Sequential that made it
        value = start
        while value != end:
            following = [s for s in self.consumers.get(value, []) if s in region]
            if len(following) == 1 and self.steps[following[0]].join is None:
                step = self.steps[following[0]]
                made[step.output] = items.add(step.module, step)
                value = step.output
                continue
            meeting, inner = self.meeting(value, region, end)
            join = self.steps[meeting]
            module = self.block(value, join, inner)
            if module is None:  # one chain, then a Merge with its earlier items
                chain, sources = self.merged(value, join, inner, made)
                for step in chain:
                    made[step.output] = items.add(step.module, step)
                names = [
                    items.label(made[source], self.steps[self.producer[source]])
                    for source in sources
                ]
                module = enn.Merge(join.join, names, axis=join.axis)
            made[join.output] = items.add(module, join)
            value = join.output
        return items.sequential()

    # --- where branches meet --------------------------------------------------------------
    def meeting(self, value: int, region: set[int], end: int) -> tuple[int, list[int]]:
        """The first step where every branch leaving `value` has arrived, and the steps
        between: following the steps in order, each value stays open until all its users
        (in `region`) have run; the step that closes the last open value is the meeting."""
        open_users = {value: len([s for s in self.consumers.get(value, []) if s in region])}
        inner: list[int] = []
        start = self.producer.get(value, -1) + 1
        for index in range(start, len(self.steps)):
            if index not in region:
                continue
            step = self.steps[index]
            if not any(v in open_users for v in step.inputs):
                continue
            for v in dict.fromkeys(step.inputs):
                if v not in open_users:
                    raise self.tangled(step, value)
                open_users[v] -= 1
                if not open_users[v]:
                    del open_users[v]
            if not open_users:
                return index, inner
            if step.output == end:
                raise self.tangled(step, value)
            inner.append(index)
            open_users[step.output] = len(
                [s for s in self.consumers.get(step.output, []) if s in region]
            )
        raise ModelImportError(f"the branches that leave {self.name_of(value)} never meet")

    def block(self, value: int, join: Step, inner: list[int]) -> enn.Module | None:
        """A Residual or Concat for the branches from `value` to `join` when they have that
        shape; None when they do not."""
        inputs = join.inputs
        if len(inputs) == 2 and inputs[0] == inputs[1]:
            raise ModelImportError(
                f"node {join.name!r} {'adds' if join.join == 'add' else 'joins'} a value to "
                "itself; no block of the model language does that"
            )
        if len(inputs) != 2:
            return None
        branches = [self.upstream(v, inner) for v in inputs]
        if branches[0] & branches[1] or branches[0] | branches[1] != set(inner):
            return None
        if join.join == "add":
            return self.residual(value, inputs, branches)
        if inputs[0] == value:
            return enn.Concat(self.sequence(value, inputs[1], branches[1]), axis=join.axis)
        return None

    def merged(self, value, join, inner, made) -> tuple[list[Step], list[int]]:
        """For a Merge: the chain of layers from `value` and the values the join takes from
        earlier items (all but the chain's end, which is the current value)."""
        chain = self.chain(value, inner)
        current = chain[-1].output if chain else value
        sources = list(join.inputs)
        fits = chain is not None and current in sources
        fits = fits and (join.join == "add" or sources[0] == current)
        if fits:
            sources.remove(current)
            earlier = set(made) | {step.output for step in chain}
            fits = all(source in earlier for source in sources)
        if not fits:
            raise self.tangled(join, value)
        return chain, sources

    def residual(self, value, inputs, branches) -> enn.Residual:
        """An add of two branches: body + shortcut (None when a branch is `value` itself)."""
        if value in inputs:
            other = inputs[1] if inputs[0] == value else inputs[0]
            index = inputs.index(other)
            return enn.Residual(self.sequence(value, other, branches[index]))
        longer = 0 if len(branches[0]) >= len(branches[1]) else 1
        body = self.sequence(value, inputs[longer], branches[longer])
        shortcut = self.sequence(value, inputs[1 - longer], branches[1 - longer])
        return enn.Residual(body, shortcut)

    def chain(self, value, inner) -> list[Step] | None:
        """The steps of `inner` as one chain of layers from `value`, or None."""
        steps, current = [], value
        for index in inner:
            step = self.steps[index]
            if step.join is not None or step.inputs != (current,):
                return None
            steps.append(step)
            current = step.output
        return steps

    def upstream(self, value, inner) -> set[int]:
        """The steps of `inner` that `value` depends on (its producer included)."""
        found, todo, allowed = set(), [value], set(inner)
        while todo:
            index = self.producer.get(todo.pop())
            if index is None or index not in allowed or index in found:
                continue
            found.add(index)
            todo.extend(self.steps[index].inputs)
        return found

    # --- messages -------------------------------------------------------------------------
    def name_of(self, value: int) -> str:
        index = self.producer.get(value)
        return "the input" if index is None else f"node {self.steps[index].name!r}"

    def tangled(self, step: Step, value: int) -> ModelImportError:
        return ModelImportError(
            f"node {step.name!r} joins branches that leave {self.name_of(value)} in a way the "
            "model language cannot say (a residual block adds two separate branches, a "
            "concat block joins its input with one branch, a merge joins one chain with "
            "its own earlier layers)"
        )


def _needed(steps: list[Step], output: int) -> list[Step]:
    """The steps whose results reach `output`, in their order."""
    producer = {step.output: step for step in steps}
    wanted, todo = set(), [output]
    while todo:
        step = producer.get(todo.pop())
        if step is not None and id(step) not in wanted:
            wanted.add(id(step))
            todo.extend(step.inputs)
    return [step for step in steps if id(step) in wanted]


class _Items:
    """The items of one Sequential being built, each with its label or None."""

    def __init__(self):
        self.modules: list[enn.Module] = []
        self.labels: list[str | None] = []

    def add(self, module: enn.Module, step: Step) -> int:
        """Append `module` (labelled after `step` if its name is worth it); its index."""
        self.modules.append(module)
        self.labels.append(None)
        index = len(self.modules) - 1
        if step.labelled:
            self.label(index, step)
        return index

    def label(self, index: int, step: Step) -> str:
        """Item `index`'s label, made from `step`'s name (unique here) if it has none yet."""
        if self.labels[index] is None:
            base = chosen = label(step.name)
            number = 1
            while chosen in self.labels:
                number += 1
                chosen = f"{base}_{number}"
            self.labels[index] = chosen
        return self.labels[index]

    def sequential(self) -> enn.Sequential:
        sequential = enn.Sequential(*self.modules)
        for module, text in zip(self.modules, self.labels):
            if text is not None:
                object.__setattr__(module, "_local_name", text)
        return sequential
