"""A custom op written by hand: swish(x) = x * sigmoid(beta * x) (Ramachandran et al., 2017).

Load it before a model file that uses it:

    topograd --plugin samples/plugins/swish.py run samples/plugins/swish_moons.tg

and test it in your own suite with the kit (see tests/samples/test_plugin_sample.py):

    from topograd.testing import arrays, gradients_hold
    test_swish = gradients_hold(swish, arrays())
"""

import numpy as np

from topograd import define_op


def swish_forward(x, beta=1.0):
    return x / (1.0 + np.exp(-beta * x))


def swish_vjp(g, out, x, beta=1.0):
    # d/dx [x s(bx)] = s(bx) + b x s(bx) (1 - s(bx)), and x s(bx) is the output itself
    s = 1.0 / (1.0 + np.exp(-beta * x))
    return (g * (s + beta * out * (1.0 - s)),)


swish = define_op(
    "swish",
    swish_forward,
    swish_vjp,
    formula="x * sigmoid(beta * x)",
    vjp_formula="dx = g * (s + beta * y * (1 - s)), s = sigmoid(beta * x)",
)
