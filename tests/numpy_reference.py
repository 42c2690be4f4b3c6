"""Independent NumPy references: explicit loops over output positions and kernel taps.

Nothing here imports qgan_jax: the layers are checked against these, not against themselves.
Layouts: activations (N, *spatial, C); quaternion channels as four contiguous blocks r|i|j|k.
"""

import itertools

import numpy as np


def qmul(p, q):
    """Hamilton product of quaternion arrays (..., 4) (broadcasting)."""
    a1, b1, c1, d1 = np.moveaxis(p, -1, 0)
    a2, b2, c2, d2 = np.moveaxis(q, -1, 0)
    return np.stack([a1 * a2 - b1 * b2 - c1 * c2 - d1 * d2,
                     a1 * b2 + b1 * a2 + c1 * d2 - d1 * c2,
                     a1 * c2 - b1 * d2 + c1 * a2 + d1 * b2,
                     a1 * d2 + b1 * c2 - c1 * b2 + d1 * a2], axis=-1)


def qconj(q):
    return q * np.array([1.0, -1.0, -1.0, -1.0])


def to_quaternions(x):
    """(..., 4Q) real blocks -> (..., Q, 4)."""
    q = x.shape[-1] // 4
    return np.stack([x[..., s * q:(s + 1) * q] for s in range(4)], axis=-1)


def from_quaternions(xq):
    """(..., Q, 4) -> (..., 4Q) real blocks."""
    return np.concatenate([xq[..., s] for s in range(4)], axis=-1)


def components_to_quaternions(w):
    """(4, *k, I, O) components -> (*k, I, O, 4)."""
    return np.moveaxis(w, 0, -1)


def same_padding(size, k, s, d):
    out = -(-size // s)
    total = max((out - 1) * s + d * (k - 1) + 1 - size, 0)
    return total // 2, total - total // 2


def conv_loop(x, ksize, strides, pads, dilation, tap_fn, out_features):
    """Cross-correlation by explicit loops. tap_fn(tap, x_at (N, C)) -> (N, out_features)."""
    n, *spatial, _ = x.shape
    out_shape = [(h + lo + hi - d * (k - 1) - 1) // s + 1
                 for h, k, s, (lo, hi), d in zip(spatial, ksize, strides, pads, dilation)]
    y = np.zeros((n, *out_shape, out_features))
    for u in itertools.product(*[range(o) for o in out_shape]):
        for t in itertools.product(*[range(k) for k in ksize]):
            idx = [ui * s - lo + ti * d for ui, ti, s, (lo, _), d in zip(u, t, strides, pads, dilation)]
            if all(0 <= i < h for i, h in zip(idx, spatial)):
                y[(slice(None), *u)] += tap_fn(t, x[(slice(None), *idx)])
    return y


def conv_transpose_loop(x, ksize, strides, pads, output_padding, dilation, tap_fn, out_features):
    """PyTorch ConvTranspose scatter by loops: y[q*s - p + t*d] += tap_fn(t, x[q])."""
    n, *spatial, _ = x.shape
    out_shape = [(h - 1) * s - 2 * p + d * (k - 1) + op + 1
                 for h, k, s, p, op, d in zip(spatial, ksize, strides, pads, output_padding, dilation)]
    y = np.zeros((n, *out_shape, out_features))
    for q in itertools.product(*[range(h) for h in spatial]):
        for t in itertools.product(*[range(k) for k in ksize]):
            idx = [qi * s - p + ti * d for qi, ti, s, p, d in zip(q, t, strides, pads, dilation)]
            if all(0 <= i < o for i, o in zip(idx, out_shape)):
                y[(slice(None), *idx)] += tap_fn(t, x[(slice(None), *q)])
    return y


def quaternion_tap(w, conjugate=False):
    """Tap function of a quaternion layer with components (4, *k, I, O): sum_c w[c, o] (x) x[c]."""
    wq = components_to_quaternions(w)  # (*k, I, O, 4)
    if conjugate:
        wq = qconj(wq)

    def tap(t, x_at):
        xq = to_quaternions(x_at)                               # (N, I, 4)
        prod = qmul(wq[t][None], xq[:, :, None, :])             # (N, I, O, 4)
        return from_quaternions(prod.sum(axis=1))
    return tap


def kron_sum_matrix(A, F_tap):
    """PHC weight of one tap in PyTorch's (out, in) layout: sum_s kron(A[s], F[s]^T)."""
    return sum(np.kron(A[s], F_tap[s].T) for s in range(A.shape[0]))


def phc_tap(A, F):
    """Tap function of a PHC layer, F (n, *k, I', O')."""
    def tap(t, x_at):
        w = kron_sum_matrix(A, F[(slice(None), *t)])            # (out, in)
        return x_at @ w.T
    return tap


def power_iteration_step(matrix, u, v, eps=1e-12):
    v = matrix.T @ u
    v = v / max(np.linalg.norm(v), eps)
    u = matrix @ v
    u = u / max(np.linalg.norm(u), eps)
    return u, v
