"""The compiled loops of a dense autoencoder's error computed from feature indices (numba).

A prepared sequence is a row of zeros and ones given by the indices of its ones (``Preparer.active_features``).
Two steps of the network need only those indices:

- ``first_layer``: the first layer's product with such a row is the sum of the weight rows of its ones (about
  20 of 148 for a user id), so it is summed directly instead of multiplied;
- ``squared_error_means``: the reconstruction's error. The output layer is a sigmoid, and where the input is one
  the residual ``1 - sigmoid(z)`` is ``sigmoid(-z)``: the sign of those logits is flipped and every residual is a
  sigmoid, computed without the cancellation of ``1 - r`` when ``r`` is close to one.

The layers between them are products of a row with a weight matrix (``dense_layer``, dot products with the
rows of its transpose), one row at a time, so a string's error is the same to the bit whatever batch it is
scored in. The sigmoid's
exponential is written out (Cephes' ``expf``: a reduction to ``[-ln 2 / 2, ln 2 / 2]``, a polynomial, a power of
two made from its bits) because numba has no vector exponential of its own: the loop then runs in the
processor's vector lanes, eight floats at a time.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from monitor.core.compiled import FLOAT_LOOPS, compiled

# Cephes' single-precision exponential (relative error below 2e-7 on the range used here).
_LOG2E = np.float32(1.44269504088896341)
_LN2_HIGH, _LN2_LOW = np.float32(0.693359375), np.float32(-2.12194440e-4)
_P0, _P1, _P2 = np.float32(1.9875691500e-4), np.float32(1.3981999507e-3), np.float32(8.3334519073e-3)
_P3, _P4, _P5 = np.float32(4.1665795894e-2), np.float32(1.6666665459e-1), np.float32(5.0000001201e-1)
_LOWEST = np.float32(87.0)  # exp(-87) is still a normal float32; the residuals below it are far below any error
_ZERO, _ONE, _HALF = np.float32(0.0), np.float32(1.0), np.float32(0.5)


@intrinsic
def _float_of_bits(typing_context: object, bits: types.Integer) -> tuple[object, object]:
    """The float32 whose bits are the int32 ``bits`` (what ``np.int32(b).view(np.float32)`` would give)."""
    signature = types.float32(types.int32)

    def codegen(context: object, builder: ir.IRBuilder, sig: object, args: list[ir.Value]) -> ir.Value:
        return builder.bitcast(args[0], ir.FloatType())

    return signature, codegen


@compiled(inline="always", **FLOAT_LOOPS)
def _exp_of_negative(a: np.float32) -> np.float32:
    """``exp(-a)`` for ``a >= 0`` in float32, in branch-free arithmetic a loop can vectorize."""
    x = -min(a, _LOWEST)
    k = np.floor(x * _LOG2E + _HALF)
    r = x - k * _LN2_HIGH - k * _LN2_LOW
    p = ((((_P0 * r + _P1) * r + _P2) * r + _P3) * r + _P4) * r + _P5
    p = p * (r * r) + r + _ONE
    return p * _float_of_bits((np.int32(k) + np.int32(127)) << 23)


@compiled(inline="always")
def _named_before(active: np.ndarray, row: int, at: int) -> bool:
    """Whether ``active[row, at]`` already appears earlier in its row (a bag of tokens repeats a token)."""
    feature = active[row, at]
    for earlier in range(at):
        if active[row, earlier] == feature:
            return True
    return False


@compiled(**FLOAT_LOOPS)
def first_layer(active: np.ndarray, repeats: bool, weights: np.ndarray, bias: np.ndarray,
                out: np.ndarray) -> None:
    """``out[i] = relu(bias + sum of weights[j] for each distinct j in active[i])``: the first layer of a row
    whose ones are ``active[i]``. ``repeats``: a row may name one feature twice (it counts once, as a one)."""
    units = weights.shape[1]
    total = np.empty(units, dtype=np.float32)
    for i in range(active.shape[0]):
        for u in range(units):
            total[u] = bias[u]
        for at in range(active.shape[1]):
            if repeats and _named_before(active, i, at):
                continue
            feature = active[i, at]
            for u in range(units):
                total[u] += weights[feature, u]
        for u in range(units):
            out[i, u] = max(total[u], _ZERO)


@compiled(**FLOAT_LOOPS)
def dense_layer(x: np.ndarray, weights_t: np.ndarray, bias: np.ndarray, relu: bool, out: np.ndarray) -> None:
    """``out[i] = bias + x[i] @ weights_t.T`` (then ``max(., 0)`` if ``relu``), one row at a time.

    ``weights_t`` is the layer's ``(units, inputs)`` transpose, so each output is a dot product of two
    contiguous rows, which the compiler sums in vector lanes. Four outputs are summed in one pass over the
    row (their sums share its loads). Every row runs the same code whatever the batch, so a row's result
    never depends on the rows beside it; a BLAS product's does, in its last bits, because its kernels treat
    a row differently by its place in the matrix."""
    units, inputs = weights_t.shape
    for i in range(x.shape[0]):
        u = 0
        while u + 4 <= units:
            s0, s1, s2, s3 = _ZERO, _ZERO, _ZERO, _ZERO
            for k in range(inputs):
                value = x[i, k]
                s0 += value * weights_t[u, k]
                s1 += value * weights_t[u + 1, k]
                s2 += value * weights_t[u + 2, k]
                s3 += value * weights_t[u + 3, k]
            out[i, u], out[i, u + 1], out[i, u + 2], out[i, u + 3] = s0, s1, s2, s3
            u += 4
        for v in range(u, units):  # the last units when they are not a multiple of four
            total = _ZERO
            for k in range(inputs):
                total += x[i, k] * weights_t[v, k]
            out[i, v] = total
        for v in range(units):
            total = out[i, v] + bias[v]
            out[i, v] = max(total, _ZERO) if relu else total


@compiled(**FLOAT_LOOPS)
def squared_error_means(logits: np.ndarray, active: np.ndarray, repeats: bool, out: np.ndarray) -> None:
    """``out[i]``: the mean over features of ``(x - sigmoid(logits[i]))**2`` for the row ``x`` whose ones are
    ``active[i]``. ``logits`` is overwritten."""
    rows, width = logits.shape
    for i in range(rows):  # the residual of a one is sigmoid(-z): flip those logits first
        for at in range(active.shape[1]):
            if repeats and _named_before(active, i, at):
                continue
            logits[i, active[i, at]] = -logits[i, active[i, at]]
    for i in range(rows):
        total = _ZERO
        for u in range(width):
            z = logits[i, u]
            e = _exp_of_negative(abs(z))
            high = _ONE / (_ONE + e)  # sigmoid(|z|)
            residual = high if z >= _ZERO else e * high
            total += residual * residual
        out[i] = np.float64(total) / width
