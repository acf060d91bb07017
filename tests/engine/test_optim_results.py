"""Results from the notes and the papers that the engine's optimizers must reproduce.

(a) Ill-conditioning. The notes (001, "Gradient descent"): gradient descent struggles when the
problem is ill-conditioned, and momentum, RMSprop or Adam "speed up convergence"; notes 002
add Nesterov's look-ahead. Here, on the quadratic f(x, y) = (x^2 + 100 y^2) / 2 (Hessian
eigenvalues 1 and 100, condition number 100) from (-1, 0.15) and on Rosenbrock's valley
(1 - x)^2 + 100 (y - x^2)^2 from its classic start (-1.2, 1), each method must reach a loss
below 1e-6 in fewer than half the steps that plain SGD needs at its best learning rate. SGD's
best is the fastest of a geometric grid of 121 learning rates over three decades, searched in
the test; on the quadratic the test also checks the search against SGD's closed-form
trajectory, so SGD is not handicapped by a coarse grid.

The other methods' hyperparameters (fixed, not searched):

    quadratic   momentum  Polyak's heavy ball for eigenvalues in [1, 100]: lr = 4 / (10 + 1)^2,
                          momentum = (9 / 11)^2 (contraction 9/11 a step; SGD's best is 99/101)
                Nesterov  lr = 1 / L = 0.01, momentum = (sqrt(kappa) - 1) / (sqrt(kappa) + 1)
                          = 9/11 (Nesterov's constant scheme for strongly convex functions)
                RMSprop   lr = 0.01, alpha = 0.99 (PyTorch's defaults)
                Adam      lr = 0.1, betas = (0.9, 0.999)
    Rosenbrock  momentum  lr = 1e-3, momentum = 0.9 (the notes' usual beta)
                Nesterov  lr = 1e-3, momentum = 0.9
                RMSprop   lr = 1e-3, alpha = 0.99, momentum = 0.9
                Adam      lr = 0.02, betas = (0.9, 0.999)

What does not reproduce as the notes might suggest: plain RMSprop (no momentum) never gets
Rosenbrock below 1e-6 with a constant learning rate. Its step lr * g / sqrt(E[g^2]) has length
about lr however small the gradient is, so near the minimum it settles into a cycle of
amplitude ~lr across the valley and the loss stops at a floor proportional to lr^2 (about
225 lr^2: 2.3e-4 at lr = 1e-3); a small enough lr to get under 1e-6 is too slow to walk the
valley. On the quadratic it gets there before the cycle sets in. The test pins that floor, and
RMSprop with momentum 0.9 stands in for RMSprop in the comparison. Adam at PyTorch's default
lr = 1e-3 is also slower than tuned SGD on Rosenbrock (about 11,000 steps to SGD's 7,500): an
adaptive method's lr is a step length, to be chosen for the distance to travel.

(b) Reddi, Kale and Kumar 2018, "On the convergence of Adam and beyond", section 3, Theorem 1:
on x in [-1, 1] with f_t(x) = C x when t mod 3 == 1 and -x otherwise (C > 2), the sum of the
f_t is minimized at x = -1, yet Adam with beta1 = 0, beta2 = 1 / (1 + C^2) and step alpha /
sqrt(t) converges to x = +1, the worst point, with average regret 2 (C - 2) / 3; AMSGrad, whose
second moment can only grow, converges to -1 (notes 001, "AMSGrad").

Everything runs on engine Tensors (scalar parameters, or vectors for the vectorized grid) with
engine backward.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from topograd import Tensor
from topograd.optim import SGD, Adam, RMSprop

TOL = 1e-6


def quadratic(x, y):
    """(x^2 + 100 y^2) / 2: eigenvalues 1 and 100 along the axes, minimum 0 at the origin."""
    return 0.5 * (x * x + 100.0 * (y * y))


def rosenbrock(x, y):
    """Rosenbrock's banana valley, minimum 0 at (1, 1); its Hessian there has condition ~2500."""
    return (1.0 - x) ** 2 + 100.0 * (y - x * x) ** 2


PROBLEMS = {
    # name: (objective, start, step cap, SGD's learning-rate grid)
    "quadratic": (quadratic, (-1.0, 0.15), 5_000, np.geomspace(1e-4, 1e-1, 121)),
    "rosenbrock": (rosenbrock, (-1.2, 1.0), 20_000, np.geomspace(1e-5, 1e-2, 121)),
}

L, MU = 100.0, 1.0  # the quadratic's largest and smallest curvature
ROOT = math.sqrt(L / MU)  # sqrt(kappa) = 10
METHODS = {
    "quadratic": {
        "momentum": lambda p: SGD(
            p, lr=4 / (math.sqrt(L) + math.sqrt(MU)) ** 2, momentum=((ROOT - 1) / (ROOT + 1)) ** 2
        ),
        "nesterov": lambda p: SGD(p, lr=1 / L, momentum=(ROOT - 1) / (ROOT + 1), nesterov=True),
        "rmsprop": lambda p: RMSprop(p, lr=0.01, alpha=0.99),
        "adam": lambda p: Adam(p, lr=0.1),
    },
    "rosenbrock": {
        "momentum": lambda p: SGD(p, lr=1e-3, momentum=0.9),
        "nesterov": lambda p: SGD(p, lr=1e-3, momentum=0.9, nesterov=True),
        "rmsprop": lambda p: RMSprop(p, lr=1e-3, alpha=0.99, momentum=0.9),
        "adam": lambda p: Adam(p, lr=0.02),
    },
}


def steps_to_tolerance(make_optimizer, objective, start, cap):
    """Optimizer steps until the loss is below TOL, or None (not within `cap`, or diverged)."""
    params = [Tensor(float(v), requires_grad=True) for v in start]
    optimizer = make_optimizer(params)
    for step in range(cap + 1):
        loss = objective(*params)
        value = loss.item()
        if value < TOL:
            return step
        if not value < 1e10 or step == cap:
            return None
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return None


def sgd_grid_search(objective, start, lrs, cap):
    """(best lr, its steps to TOL) for plain SGD over the grid `lrs`, or None.

    SGD is linear in the gradient, so SGD with lr on f is SGD with lr 1 on lr * f. One vector
    per coordinate then carries every run at once (run k minimizes lr_k * f(x_k, y_k); the runs
    do not interact), and the search can stop at the first run to reach the tolerance: at that
    step it is the fastest. Diverging runs turn to inf/nan without touching the others.
    """
    lrs = np.asarray(lrs, dtype=np.float64)
    params = [Tensor(np.full(lrs.size, float(v)), requires_grad=True) for v in start]
    optimizer = SGD(params, lr=1.0)
    with np.errstate(over="ignore", invalid="ignore"):
        for step in range(cap + 1):
            losses = objective(*params)
            arrived = losses.data < TOL
            if arrived.any():
                return float(lrs[np.argmax(arrived)]), step
            if step == cap:
                return None
            optimizer.zero_grad()
            (losses * lrs).sum().backward()
            optimizer.step()
    return None


@functools.cache
def best_sgd(problem):
    """SGD's best (lr, steps) on a problem, searched once per test process."""
    objective, start, cap, lrs = PROBLEMS[problem]
    found = sgd_grid_search(objective, start, lrs, cap)
    assert found is not None, f"no SGD learning rate reached {TOL} on {problem} in {cap} steps"
    return found


def quadratic_sgd_steps_closed_form(lrs, start, cap):
    """Steps to TOL of SGD on the quadratic from its closed form (-1 where not within cap):
    each coordinate contracts by (1 - lr * eigenvalue) per step."""
    x0, y0 = start
    steps = np.arange(cap + 1)[:, None]
    lrs = np.asarray(lrs, dtype=np.float64)[None, :]
    with np.errstate(over="ignore", invalid="ignore"):
        losses = 0.5 * (
            x0**2 * (1 - lrs) ** (2 * steps) + 100 * y0**2 * (1 - 100 * lrs) ** (2 * steps)
        )
    arrived = losses < TOL
    return np.where(arrived.any(axis=0), arrived.argmax(axis=0), -1)


# --- (a) SGD's best, checked -------------------------------------------------------------
def test_sgd_grid_search_agrees_with_the_closed_form_on_the_quadratic():
    """The vectorized search finds what SGD's closed-form trajectory says, and the grid is fine
    enough: within 10% of the best over a continuum of learning rates, 2 / (1 + 100) nearby."""
    _, start, cap, lrs = PROBLEMS["quadratic"]
    best_lr, best_steps = best_sgd("quadratic")
    exact = quadratic_sgd_steps_closed_form(lrs, start, cap)
    reached = exact >= 0
    assert best_lr == lrs[reached][np.argmin(exact[reached])]
    assert abs(best_steps - exact[reached].min()) <= 1
    fine = np.linspace(1e-3, 2 / 100, 4001)
    continuum = quadratic_sgd_steps_closed_form(fine, start, best_steps)
    assert best_steps <= 1.1 * continuum[continuum >= 0].min()
    assert best_lr < 2 / 100 < lrs.max()  # stability limit 2 / L lies inside the grid


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_sgd_grid_search_equals_a_plain_sgd_run(problem):
    """The loss-scaling trick is exact: a scalar SGD run at the best lr takes the same number
    of steps. The best lr is inside the grid, not at an end of it."""
    objective, start, cap, lrs = PROBLEMS[problem]
    best_lr, best_steps = best_sgd(problem)
    assert lrs.min() < best_lr < lrs.max()
    assert steps_to_tolerance(lambda p: SGD(p, lr=best_lr), objective, start, cap) == best_steps


# --- (a) the claim -----------------------------------------------------------------------
@pytest.mark.parametrize("method", ["momentum", "nesterov", "rmsprop", "adam"])
@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_method_beats_sgd_at_its_best_learning_rate(problem, method):
    """Fewer than half of tuned SGD's steps to a loss of 1e-6 (see the module docstring)."""
    objective, start, _, _ = PROBLEMS[problem]
    _, sgd_steps = best_sgd(problem)
    steps = steps_to_tolerance(METHODS[problem][method], objective, start, sgd_steps)
    assert steps is not None, f"{method} did not reach {TOL} within SGD's {sgd_steps} steps"
    assert steps < sgd_steps / 2, (steps, sgd_steps)


def test_plain_rmsprop_stalls_on_rosenbrock_at_a_floor_proportional_to_lr_squared():
    """Without momentum RMSprop's step stays ~lr long near the minimum, so the loss stalls at
    a floor ~ lr^2: doubling lr quadruples it, and neither run comes near 1e-6."""
    objective, start, _, _ = PROBLEMS["rosenbrock"]
    floors = []
    for lr in (2e-3, 4e-3):
        params = [Tensor(float(v), requires_grad=True) for v in start]
        optimizer = RMSprop(params, lr=lr, alpha=0.99)
        losses = []
        for _ in range(6000):
            loss = objective(*params)
            losses.append(loss.item())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        assert min(losses) > 100 * TOL
        floors.append(min(losses[-500:]))
    assert floors[1] / floors[0] == pytest.approx(4.0, rel=0.1)


# --- (b) Reddi et al. 2018 ---------------------------------------------------------------
def online_run(make_optimizer, C, steps=3000, alpha=0.5, x0=0.0):
    """The paper's online problem: f_t(x) = C x if t % 3 == 1 else -x, step alpha / sqrt(t),
    x projected back onto [-1, 1] after each step. Returns the mean of x over the last tenth
    of the steps (x jitters by ~alpha / sqrt(t) within each cycle of three) and the average
    regret against the best fixed point x = -1."""
    x = Tensor(x0, requires_grad=True)
    optimizer = make_optimizer([x])
    regret = 0.0
    trajectory = []
    for t in range(1, steps + 1):
        coefficient = C if t % 3 == 1 else -1.0
        optimizer.param_groups[0]["lr"] = alpha / math.sqrt(t)
        loss = coefficient * x
        regret += coefficient * (x.item() - (-1.0))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        x.data = np.clip(x.data, -1.0, 1.0)
        trajectory.append(x.item())
    return float(np.mean(trajectory[-steps // 10 :])), regret / steps


def paper_adam(C, amsgrad, bias_correction):
    """The paper's setting: beta1 = 0, beta2 = 1 / (1 + C^2); its analysis has no bias
    correction and no eps, PyTorch's Adam has both; either way the result must hold."""
    return lambda p: Adam(
        p,
        lr=1.0,
        betas=(0.0, 1.0 / (1.0 + C**2)),
        eps=1e-8 if bias_correction else 0.0,
        amsgrad=amsgrad,
        bias_correction=bias_correction,
    )


@pytest.mark.parametrize("bias_correction", [True, False], ids=["torch", "paper"])
@pytest.mark.parametrize("C", [3.0, 10.0])
def test_adam_drifts_to_the_worst_point_and_amsgrad_converges(C, bias_correction):
    """Theorem 1: Adam ends at x = +1 with average regret 2 (C - 2) / 3 (what x = +1 costs per
    step against x = -1); AMSGrad ends at the optimum x = -1 with average regret near 0."""
    x, regret = online_run(paper_adam(C, amsgrad=False, bias_correction=bias_correction), C)
    assert x > 0.98
    assert regret == pytest.approx(2 * (C - 2) / 3, rel=0.05)
    x, regret = online_run(paper_adam(C, amsgrad=True, bias_correction=bias_correction), C)
    assert x < -0.98
    assert 0 < regret < 0.01 * C


def test_online_gradient_descent_finds_the_optimum_of_the_same_problem():
    """The control: projected SGD with step alpha / sqrt(t) (Zinkevich's online gradient
    descent, O(sqrt(T)) regret) solves the problem, so the failure above is Adam's."""
    x, regret = online_run(lambda p: SGD(p, lr=1.0), 3.0)
    assert x < -0.98
    assert 0 < regret < 0.05
