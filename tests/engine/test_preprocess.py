"""Preprocessing against the notes' rule and against linear algebra done another way.

The rule (notes 002): statistics come from the training split only and are applied
unchanged to validation and test data, so a validation set drawn from a shifted
distribution does NOT come out with zero mean. The truths: numpy's mean and std written out
by hand, numpy's SVD and `np.cov` eigenvalues for PCA, and for whitening the defining
property (identity covariance) plus, for ZCA, the inverse square root of the covariance,
checked through `np.linalg.inv` and through its optimality among all whitening transforms.
"""

from __future__ import annotations

import numpy as np
import pytest

from topograd.data import (
    PCA,
    MeanSubtraction,
    NotFittedError,
    Pipeline,
    Standardize,
    Whitening,
    load_digits,
    split,
)


def correlated(n=500, d=5, seed=0, shift=0.0):
    """Correlated Gaussian rows with very different scales per direction."""
    rng = np.random.default_rng(seed)
    mixing = np.random.default_rng(100).normal(size=(d, d)) * np.linspace(0.5, 4, d)
    return rng.normal(size=(n, d)) @ mixing + 3.0 + shift


def covariance(x):
    """The notes' covariance: centered X^T X / N."""
    centered = x - x.mean(axis=0)
    return centered.T @ centered / len(x)


def random_orthogonal(d, seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q * np.sign(np.diag(r))


FACTORIES = {
    "mean image": MeanSubtraction,
    "channel mean": lambda: MeanSubtraction(per="channel", image_shape=(1, 1, 5)),
    "standardize": Standardize,
    "pca 3": lambda: PCA(3),
    "pca whitening": lambda: Whitening("pca"),
    "zca whitening": lambda: Whitening("zca"),
    "pipeline": lambda: Pipeline([MeanSubtraction(), PCA(0.9)]),
}


# --- the common protocol ----------------------------------------------------------------------
@pytest.mark.parametrize("make", FACTORIES.values(), ids=FACTORIES.keys())
def test_transform_before_fit_is_a_clear_error(make):
    with pytest.raises(NotFittedError, match=r"not fitted: call fit\(x_train\) first"):
        make().transform(correlated())
    with pytest.raises(NotFittedError):
        make().state_dict()


@pytest.mark.parametrize("make", FACTORIES.values(), ids=FACTORIES.keys())
def test_state_dict_round_trips_through_an_npz_checkpoint(make, tmp_path):
    x_train, x_val = correlated(seed=0), correlated(n=50, seed=1, shift=2.0)
    step = make().fit(x_train)
    expected = step.transform(x_val)
    state = step.state_dict()
    assert all(isinstance(value, np.ndarray) for value in state.values())
    np.savez(tmp_path / "state.npz", **state)
    with np.load(tmp_path / "state.npz", allow_pickle=False) as archive:
        loaded = {key: archive[key] for key in archive.files}
    assert np.array_equal(make().load_state_dict(loaded).transform(x_val), expected)
    with pytest.raises(KeyError, match="unexpected"):
        make().load_state_dict({**state, "extra": np.zeros(1)})
    with pytest.raises(KeyError, match="missing"):
        make().load_state_dict({k: v for k, v in state.items() if not k.endswith("mean")})


def test_fit_returns_self_and_fit_transform_is_fit_then_transform():
    x = correlated()
    scaler = Standardize()
    assert scaler.fit(x) is scaler
    assert np.array_equal(Standardize().fit_transform(x), scaler.transform(x))


def test_a_different_feature_count_is_refused():
    scaler = Standardize().fit(correlated(d=5))
    with pytest.raises(ValueError, match="fitted on 5 features, got 4"):
        scaler.transform(correlated(d=4))


# --- training statistics only -------------------------------------------------------------------
def test_standardize_uses_training_mean_and_std_for_validation():
    x_train = correlated(seed=0)
    x_val = correlated(n=200, seed=1, shift=5.0)  # a shifted distribution
    scaler = Standardize().fit(x_train)
    train_out, val_out = scaler.transform(x_train), scaler.transform(x_val)
    assert np.allclose(train_out.mean(axis=0), 0, atol=1e-12)
    assert np.allclose(train_out.std(axis=0), 1)
    mean = x_train.sum(axis=0) / len(x_train)
    std = np.sqrt(((x_train - mean) ** 2).sum(axis=0) / len(x_train))
    assert np.allclose(val_out, (x_val - mean) / std)
    assert np.all(np.abs(val_out.mean(axis=0)) > 0.5)  # NOT re-centered on validation


def test_standardize_only_centers_a_constant_feature():
    x_train = np.c_[correlated(d=2), np.zeros(500)]
    x_val = np.c_[correlated(n=3, d=2), [0.0, 2.0, 16.0]]
    out = Standardize().fit(x_train).transform(x_val)
    assert np.array_equal(out[:, 2], [0.0, 2.0, 16.0])


def test_digits_validation_keeps_the_training_mean_image():
    parts = split(load_digits(), seed=0)
    centering = MeanSubtraction().fit(parts.train.x)
    assert np.allclose(centering.transform(parts.train.x).mean(axis=0), 0, atol=1e-12)
    val = centering.transform(parts.val.x)
    assert np.allclose(val, parts.val.x - parts.train.x.mean(axis=0))
    assert np.abs(val.mean(axis=0)).max() > 0.1


# --- mean subtraction ---------------------------------------------------------------------------
def test_per_channel_mean_is_one_number_per_channel():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(20, 3, 4, 5)) + np.array([1.0, -2.0, 7.0])[:, None, None]
    step = MeanSubtraction(per="channel").fit(images)
    means = [images[:, c].mean() for c in range(3)]
    assert np.allclose(step.mean_, means)
    out = step.transform(images)
    assert out.shape == images.shape
    for c in range(3):
        assert np.allclose(out[:, c], images[:, c] - means[c])
    flat = MeanSubtraction(per="channel", image_shape=(3, 4, 5)).fit(images.reshape(20, -1))
    assert np.allclose(flat.transform(images.reshape(20, -1)), out.reshape(20, -1))


def test_per_channel_needs_to_know_the_channels():
    with pytest.raises(ValueError, match=r"needs image_shape=\(C, H, W\)"):
        MeanSubtraction(per="channel").fit(np.zeros((4, 12)))
    with pytest.raises(ValueError, match="per must be"):
        MeanSubtraction(per="pixel")
    with pytest.raises(ValueError, match=r"holds 12 values, rows have 10"):
        MeanSubtraction(per="channel", image_shape=(3, 2, 2)).fit(np.zeros((4, 10)))


def test_mean_image_keeps_the_image_shape():
    images = load_digits().images()
    out = MeanSubtraction().fit_transform(images)
    assert out.shape == images.shape
    assert np.allclose(out, images - images.mean(axis=0))


# --- PCA ----------------------------------------------------------------------------------------
def test_pca_equals_numpy_svd_of_the_centered_data():
    x = correlated(d=6)
    centered = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(centered, full_matrices=False)
    pca = PCA(4).fit(x)
    signs = np.sign(np.sum(pca.components_ * vt[:4], axis=1))
    assert np.allclose(np.abs(signs), 1)
    assert np.allclose(pca.components_, signs[:, None] * vt[:4])
    assert np.allclose(pca.transform(x), (centered @ vt[:4].T) * signs)
    eigenvalues = np.sort(np.linalg.eigvalsh(np.cov(x, rowvar=False)))[::-1]
    assert np.allclose(pca.explained_variance_, eigenvalues[:4])
    assert np.allclose(pca.explained_variance_ratio_, eigenvalues[:4] / eigenvalues.sum())
    assert np.allclose(pca.explained_variance_, s[:4] ** 2 / (len(x) - 1))


def test_pca_with_every_component_is_a_rotation():
    x = correlated(d=5)
    pca = PCA().fit(x)
    assert pca.n_components_ == 5
    assert np.allclose(pca.components_ @ pca.components_.T, np.eye(5))
    z = pca.transform(x)
    assert np.allclose(z @ pca.components_ + pca.mean_, x)
    assert np.allclose(np.cov(z, rowvar=False), np.diag(pca.explained_variance_))


@pytest.fixture(scope="module")
def digits_x():
    return load_digits().x


@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.6, 0.9, 0.99, 0.999, 1.0])
def test_variance_fraction_keeps_the_fewest_components_that_reach_it(fraction, digits_x):
    x = digits_x
    eigenvalues = np.sort(np.linalg.eigvalsh(np.cov(x, rowvar=False)))[::-1]
    cumulative = np.cumsum(eigenvalues) / eigenvalues.sum()
    k = next((i + 1 for i, total in enumerate(cumulative) if total >= fraction - 1e-12), 64)
    pca = PCA(fraction).fit(x)
    assert pca.n_components_ == k
    assert pca.explained_variance_ratio_.sum() >= fraction - 1e-9
    if k > 1:
        assert pca.explained_variance_ratio_[:-1].sum() < fraction


def test_pca_argument_checks():
    with pytest.raises(ValueError, match="fraction must be in"):
        PCA(1.5)
    with pytest.raises(ValueError, match=">= 1"):
        PCA(0)
    with pytest.raises(ValueError, match=r"exceeds min\(N, D\) = 5"):
        PCA(6).fit(correlated(d=5))
    assert PCA().fit(correlated(n=4, d=7)).n_components_ == 4  # no more than N directions


def test_pca_signs_are_stable_across_refits():
    x = correlated(d=4)
    assert np.array_equal(PCA().fit(x).components_, PCA().fit(x.copy()).components_)
    assert np.all(np.abs(PCA().fit(-x).components_ - PCA().fit(x).components_) < 1e-12)


# --- whitening ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["pca", "zca"])
def test_whitened_training_data_have_identity_covariance(kind):
    x = correlated(d=6)
    exact = Whitening(kind, eps=0.0).fit_transform(x)
    assert np.allclose(covariance(exact), np.eye(6), atol=1e-10)
    assert np.allclose(exact.mean(axis=0), 0, atol=1e-12)
    # with eps each variance s becomes s / (s + eps): identity up to eps over the variance
    eps = 1e-5
    variances = np.linalg.eigvalsh(covariance(x))
    default = covariance(Whitening(kind, eps=eps).fit_transform(x))
    assert np.allclose(np.linalg.eigvalsh(default), np.sort(variances / (variances + eps)))
    assert np.allclose(default, np.eye(6), atol=eps / variances.min())


def test_pca_whitening_is_pca_scaled_to_unit_variance():
    x = correlated(d=5)
    white = Whitening("pca", eps=0.0).fit_transform(x)
    pca = PCA().fit(x)
    scale = np.sqrt(pca.explained_variance_ * (len(x) - 1) / len(x))
    assert np.allclose(white, pca.transform(x) / scale)


def test_zca_is_the_symmetric_inverse_square_root_of_the_covariance():
    x = correlated(d=5)
    eps = 1e-5
    zca = Whitening("zca", eps=eps).fit(x)
    w = zca.matrix_
    sigma = covariance(x)
    assert np.allclose(w, w.T)
    assert np.all(np.linalg.eigvalsh(w) > 0)
    assert np.allclose(w @ w, np.linalg.inv(sigma + eps * np.eye(5)))  # W^2 = (Sigma + eps)^-1
    u, s, _ = np.linalg.svd(sigma)
    assert np.allclose(w, u @ np.diag(1 / np.sqrt(s + eps)) @ u.T)
    assert np.allclose(zca.transform(x), (x - x.mean(axis=0)) @ w)


def test_zca_changes_the_data_least_of_all_whitening_transforms():
    x = correlated(d=5)
    centered = x - x.mean(axis=0)
    zca = Whitening("zca", eps=0.0).fit(x).matrix_
    distance = np.sum((centered @ zca - centered) ** 2)
    pca = Whitening("pca", eps=0.0).fit(x).matrix_
    assert np.sum((centered @ pca - centered) ** 2) > distance
    for seed in range(20):  # any whitening is zca followed by a rotation
        other = zca @ random_orthogonal(5, seed)
        assert np.allclose(covariance(centered @ other), np.eye(5), atol=1e-10)
        assert np.sum((centered @ other - centered) ** 2) > distance


def test_whitening_validation_data_use_training_statistics():
    x_train, x_val = correlated(seed=0), correlated(n=300, seed=1, shift=3.0)
    step = Whitening("zca").fit(x_train)
    assert np.allclose(step.transform(x_val), (x_val - x_train.mean(axis=0)) @ step.matrix_)
    assert np.abs(step.transform(x_val).mean(axis=0)).max() > 0.3


def test_zca_keeps_image_shape_and_pca_whitening_gives_rows():
    images = load_digits().images()[:300]
    assert Whitening("zca").fit_transform(images).shape == images.shape
    assert Whitening("pca").fit_transform(images).shape == (300, 64)
    with pytest.raises(ValueError, match="kind must be"):
        Whitening("pcaa")


# --- pipeline -----------------------------------------------------------------------------------
def test_pipeline_fits_each_step_on_the_previous_output():
    x_train, x_val = correlated(d=6, seed=0), correlated(n=40, d=6, seed=1, shift=1.0)
    pipeline = Pipeline([Standardize(), PCA(3)]).fit(x_train)
    scaler = Standardize().fit(x_train)
    pca = PCA(3).fit(scaler.transform(x_train))
    assert np.allclose(pipeline.transform(x_val), pca.transform(scaler.transform(x_val)))
    keys = list(pipeline.state_dict())
    assert keys == [
        "0.mean",
        "0.std",
        "1.mean",
        "1.components",
        "1.explained_variance",
        "1.explained_variance_ratio",
    ]


def test_nested_pipelines_save_and_load():
    x = correlated()
    inner = Pipeline([MeanSubtraction(), Standardize()])
    outer = Pipeline([inner, Whitening("zca")]).fit(x)
    state = outer.state_dict()
    assert "0.1.std" in state and "1.matrix" in state
    fresh = Pipeline([Pipeline([MeanSubtraction(), Standardize()]), Whitening("zca")])
    assert np.array_equal(fresh.load_state_dict(state).transform(x), outer.transform(x))
