"""Activations of the liquid layers, NumPy, in place where they can be.

lecun_tanh (1.7159 tanh(0.666 x)), tanh, relu, silu and gelu in the exact erf form of
``torch.nn.GELU()``; ``erf`` is a Chebyshev interpolant (NumPy has none), and ``sigmoid``
is 0.5 tanh(z/2) + 0.5: one transcendental and no overflow of exp.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
from numpy.polynomial import chebyshev as _cheb

_ERF_SPAN, _ERF_DEGREE = 6.0, 40


@cache
def _erf_coefficients() -> np.ndarray:
    """Chebyshev interpolant of erf on [0, 6] at 41 Chebyshev nodes (max error 4e-15).

    Sampled from ``math.erf`` once; beyond 6, 1 - erf < 3e-17 is below float64 resolution.
    """
    nodes = np.cos(np.pi * (np.arange(_ERF_DEGREE + 1) + 0.5) / (_ERF_DEGREE + 1))
    values = [math.erf(v) for v in (nodes + 1.0) * (_ERF_SPAN / 2)]
    return _cheb.chebfit(nodes, values, _ERF_DEGREE)


def erf(x: np.ndarray) -> np.ndarray:
    """Error function, vectorised, float64 internally (|error| < 1e-14); returns x's dtype."""
    x64 = np.asarray(x, dtype=np.float64)
    a = np.minimum(np.abs(x64), _ERF_SPAN)
    out = _cheb.chebval(a * (2.0 / _ERF_SPAN) - 1.0, _erf_coefficients())
    return (np.sign(x64) * out).astype(np.result_type(x, np.float32), copy=False)


def _lecun_tanh(z: np.ndarray) -> None:
    np.multiply(z, 0.666, out=z)
    np.tanh(z, out=z)
    np.multiply(z, 1.7159, out=z)


def _gelu(z: np.ndarray) -> None:
    z *= (1.0 + erf(z * math.sqrt(0.5))) * 0.5  # exact erf form, as torch.nn.GELU()


# Backbone activations, applied in place (no temporaries on the default path).
ACTIVATE = {
    "lecun_tanh": _lecun_tanh,
    "tanh": lambda z: np.tanh(z, out=z),
    "relu": lambda z: np.maximum(z, 0, out=z),
    "silu": lambda z: np.multiply(z, sigmoid(z.copy()), out=z),
    "gelu": _gelu,
}


def sigmoid(z: np.ndarray) -> np.ndarray:
    """In-place logistic via 0.5 tanh(z/2) + 0.5: one transcendental, no exp overflow."""
    np.multiply(z, 0.5, out=z)
    np.tanh(z, out=z)
    np.multiply(z, 0.5, out=z)
    np.add(z, 0.5, out=z)
    return z
