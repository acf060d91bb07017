"""Module conventions (PyTorch's) and layer behaviour that is not a numeric comparison."""

import numpy as np
import pytest
from topograd.engine.registry import UnknownNameError

from topograd import Graph, Tensor, gradcheck, nn
from topograd import functional as F


def mlp():
    return nn.Sequential(
        nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3)
    )


def test_named_parameters_and_buffers():
    model = mlp()
    names = [name for name, _ in model.named_parameters()]
    assert names == ["0.weight", "0.bias", "1.weight", "1.bias", "4.weight", "4.bias"]
    assert all(p.requires_grad for p in model.parameters())
    assert [name for name, _ in model.named_buffers()] == [
        "1.running_mean",
        "1.running_var",
        "1.num_batches_tracked",
    ]
    assert model[0].weight.shape == (4, 8)  # the notes' W[fan_in, fan_out]


def test_train_and_eval_switch_every_submodule():
    model = mlp()
    assert all(m.training for m in model.modules())
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())


def test_state_dict_round_trip_restores_outputs():
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((16, 4)))
    source = mlp()
    source(x)  # moves the running statistics
    state = source.state_dict()
    target = mlp()
    target.load_state_dict(state)
    source.eval()
    target.eval()
    np.testing.assert_array_equal(source(x).data, target(x).data)
    state["0.weight"][:] = 0.0  # a copy: changing it leaves the model alone
    assert np.any(source[0].weight.data != 0.0)


def test_load_state_dict_rejects_bad_keys_and_shapes_without_changing_anything():
    model = mlp()
    before = model.state_dict()
    bad = dict(before)
    bad["0.weight"] = np.zeros((5, 8))
    del bad["4.bias"]
    bad["extra"] = np.zeros(1)
    with pytest.raises(ValueError) as error:
        model.load_state_dict(bad)
    message = str(error.value)
    assert "missing keys: 4.bias" in message
    assert "unexpected keys: extra" in message
    assert "0.weight: saved shape (5, 8) != model shape (4, 8)" in message
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name])


def test_nodes_carry_the_layer_that_made_them():
    model = mlp()
    loss = F.cross_entropy(model(Tensor(np.ones((4, 4)))), [0, 1, 2, 0])
    graph = Graph(loss)
    kinds = {graph.info(n).layer_kind for n in graph.nodes}
    assert {"Linear", "BatchNorm1d", "ReLU", "Dropout"} <= kinds
    weight = graph.info(model[0].weight)
    assert (weight.layer, weight.layer_kind, weight.op) == ("sequential.0", "Linear", "parameter")


def test_linear_rejects_wrong_feature_count():
    with pytest.raises(ValueError, match=r"Linear\(4, 8\).*4 features.*\(2, 5\)"):
        nn.Linear(4, 8)(Tensor(np.ones((2, 5))))


def test_maxout_takes_the_max_of_its_pieces_and_has_right_gradients():
    layer = nn.Maxout(3, 2, pieces=3, rng=0)
    x = np.random.default_rng(1).standard_normal((5, 3))
    z = x @ layer.weight.data + layer.bias.data
    np.testing.assert_allclose(layer(Tensor(x)).data, z.reshape(5, 2, 3).max(axis=-1))
    assert gradcheck(
        lambda w: (Tensor(x) @ w).reshape(5, 2, 3).max(axis=-1), layer.weight.data
    ).passed()


def test_layer_and_group_norm_validate_shapes():
    with pytest.raises(ValueError, match="3 groups do not divide 4 channels"):
        nn.GroupNorm(3, 4)
    with pytest.raises(ValueError, match=r"does not end with \(5,\)"):
        nn.LayerNorm(5)(Tensor(np.ones((2, 4))))
    out = nn.GroupNorm(2, 4)(Tensor(np.random.default_rng(0).standard_normal((3, 4, 5)))).data
    grouped = out.reshape(3, 2, -1)
    np.testing.assert_allclose(grouped.mean(axis=2), 0.0, atol=1e-12)


def test_layers_are_registered_by_name_with_suggestions():
    assert nn.LAYERS.get("batchnorm") is nn.BatchNorm1d
    with pytest.raises(UnknownNameError, match="did you mean 'batchnorm'"):
        nn.LAYERS.get("batchnrom")


def test_zero_grad_clears_parameter_gradients():
    model = nn.Linear(2, 2)
    (model(Tensor(np.ones((1, 2)))).sum()).backward()
    assert model.weight.grad is not None
    model.zero_grad()
    assert model.weight.grad is None


def test_float32_model_stays_float32():
    model = nn.Sequential(
        nn.Linear(3, 4, dtype=np.float32), nn.ReLU(), nn.Linear(4, 2, dtype=np.float32)
    )
    out = model(Tensor(np.ones((2, 3)), dtype=np.float32))
    assert out.dtype == np.float32
    F.cross_entropy(out, [0, 1]).backward()
    assert model[0].weight.grad.dtype == np.float32
