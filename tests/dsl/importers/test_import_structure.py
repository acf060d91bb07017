"""Branches folded into the model language's blocks: a residual add becomes a Residual, a
concat of a value with its branch a Concat, other joins along one chain Merges with labelled
earlier layers, and anything else is refused at the node where the branches meet."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from import_models import assert_close, differences, example
from topograd.dsl.importers import ModelImportError, import_torch, write_model
from topograd.engine import nn as enn
from torch import nn


class Join(nn.Module):
    """stem -> relu -> conv, then a join of `how`."""

    def __init__(self, how):
        super().__init__()
        self.how = how
        self.stem = nn.Conv2d(2, 4, 3, padding=1)
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.other = nn.Conv2d(4, 4, 1) if how == "crossed" else None

    def forward(self, x):
        s = self.stem(x)
        a = torch.relu(s)
        b = self.conv(a)
        if self.how == "concat first":
            return torch.cat([s, b], 1)
        if self.how == "concat second":
            return torch.cat([b, s], 1)
        if self.how == "concat three":
            return torch.cat([b, s, a], 1)
        if self.how == "crossed":
            c = self.other(s)
            return (b + c) + c
        return s + s


def imported(how):
    torch.manual_seed(0)
    model = Join(how).double().eval()
    x = example((2, 5, 5))
    return model, x, import_torch(model, torch.as_tensor(x))


def test_a_value_joined_with_its_branch_is_a_concat_block(tmp_path):
    model, x, result = imported("concat first")
    block = result.module[-1]
    assert isinstance(block, enn.Concat) and len(block.body) == 2
    assert_close(differences(result, model, x))
    write_model(result, tmp_path / "join.tg")  # checked and built on the way


@pytest.mark.parametrize(
    ("how", "sources"), [("concat second", ("stem",)), ("concat three", ("stem", "relu"))]
)
def test_other_joins_along_one_chain_are_merges_with_labelled_layers(how, sources, tmp_path):
    model, x, result = imported(how)
    merge = result.module[-1]
    assert isinstance(merge, enn.Merge) and merge.mode == "concat"
    assert merge.sources == sources
    assert result.module.item_names()[: len(result.module) - 1][0] == "stem"
    assert_close(differences(result, model, x))
    model_file, _ = write_model(result, tmp_path / "merge.tg")
    assert f"concat({', '.join(sources)})" in model_file.read_text()


def test_crossing_branches_are_refused_at_their_join():
    with pytest.raises(
        ModelImportError, match=r"node 'add_1' joins branches that leave node 'stem'"
    ):
        imported("crossed")


def test_a_value_added_to_itself_is_refused():
    with pytest.raises(ModelImportError, match="adds a value to itself"):
        imported("twice")
