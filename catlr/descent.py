"""Batch gradient descent for logistic regression, in two exact forms.

Primal form (the course's loop), two passes over X (n_x, m) per iteration:
    Z = w.T X + b;  dZ = A - Y;  w -= lr X dZ.T / m;  b -= lr sum(dZ) / m
Dual form. From w = 0, b = 0 every step adds a combination of X's columns to w,
and b moves by the sum of that combination, so at every iteration
    w = X c,  b = sum(c),  Z = (K + 1) c   with K = X.T X (m x m), 1 all ones,
(the bias is the dual of a constant feature). Each step is then
    c -= lr (A - Y) / m,   one m x m product instead of two passes over X.
The iterates are the primal loop's up to rounding; K costs one pass of m^2 n_x.
"""

import math

from .errors import CatlrError

FORMS = ("auto", "primal", "dual")
BLOCK = 2048  # features converted from uint8 at a time: a buffer that stays in cache


def choose_form(n_x: int, m: int, iters: int) -> str:
    """'dual' when m is well below n_x and K pays for itself, else 'primal'.

    Flops: dual m^2 n_x (for K) + iters m^2 + n_x m; primal 2 iters n_x m.
    """
    dual = m * m * n_x + iters * m * m + n_x * m
    primal = 2 * iters * n_x * m
    return "dual" if m < n_x and dual < primal else "primal"


def gradient_descent(X, Y, lr: float, iters: int, *, cost_every: int = 100,
                     form: str = "auto", callback=None):
    """Run `iters` steps from w = 0, b = 0 on X (n_x, m) and Y (1, m), in X's dtype.

    Returns (w (n_x, 1) float64, b float, costs list, form used). The cost is
    recorded before the update at every iteration i with i % cost_every == 0,
    as the course does; `callback(i, cost)` is called at each of those.
    """
    import numpy as np

    n_x, m = X.shape
    form = resolve_form(form, n_x, m, iters)
    y = np.asarray(Y, dtype=X.dtype).reshape(m)
    if form == "dual":
        c, b, costs, _ = dual(X.T @ X, y, lr, iters, cost_every, callback)
        w = X @ c
    else:
        w, b, costs = primal(X, y, lr, iters, cost_every, callback)
    return w.astype(np.float64).reshape(n_x, 1), b, costs, form


def fit_pixels(x, y, lr: float, iters: int, *, cost_every=100, form="auto", dtype="float64",
               callback=None, gram=None):
    """gradient_descent on images x (m, s, s, 3) uint8 without building X when it can.

    The dual form reads K and w = X c from the pixels a block of features at a
    time, so the (n_x, m) float matrix is never allocated; the primal form builds
    X once. `gram`, if given, is gram_pixels(x) computed earlier (it is not modified).
    Returns (w (n_x, 1), b, costs, form, z) with z = w.T X + b (m,) after the last step.
    """
    import numpy as np

    from .datasets import flatten

    m = len(x)
    flat = x.reshape(m, -1)
    n_x = flat.shape[1]
    form = resolve_form(form, n_x, m, iters)
    yv = np.asarray(y, dtype=dtype).reshape(m)
    if form == "dual":
        K = gram_pixels(x, dtype) if gram is None else gram.copy()
        c, b, costs, z = dual(K, yv, lr, iters, cost_every, callback)
        w = np.empty(n_x, dtype)
        for start, block in zip(range(0, n_x, BLOCK), _blocks(flat, dtype)):
            w[start:start + block.shape[1]] = c @ block
    else:
        X = flatten(x, dtype)
        w, b, costs = primal(X, yv, lr, iters, cost_every, callback)
        z = w @ X + b
    return w.astype(np.float64).reshape(n_x, 1), b, costs, form, z


def gram_pixels(x, dtype="float64"):
    """K = X.T X (m, m) for the images x (m, s, s, 3) uint8, X never built."""
    import numpy as np

    flat = x.reshape(len(x), -1)
    K = np.zeros((len(x), len(x)), dtype)
    for block in _blocks(flat, dtype):
        K += block @ block.T  # numpy runs a @ a.T as a symmetric rank-k update
    return K


def _blocks(flat, dtype):
    """Yield X.T (m, n_x) / 255 in column blocks of BLOCK features, in one reused buffer."""
    import numpy as np

    buf = np.empty((flat.shape[0], BLOCK), dtype)
    for start in range(0, flat.shape[1], BLOCK):
        part = flat[:, start:start + BLOCK]
        out = buf[:, :part.shape[1]]
        np.divide(part, 255, out=out)
        yield out


def resolve_form(form, n_x, m, iters):
    """The form to run: `form` itself, or choose_form's pick for "auto"."""
    if form == "auto":
        return choose_form(n_x, m, iters)
    if form not in FORMS:
        raise CatlrError(f"unknown form {form!r}, use one of {', '.join(FORMS)}")
    return form


def dual(K, y, lr, iters, cost_every=100, callback=None):
    """The dual loop on K = X.T X (m, m), modified in place. Returns (c, b, costs, z_final).

    A - Y is written as (tanh(Z / 2) + 1 - 2Y) / 2: one call for the sigmoid, exact for
    any Z (tanh saturates at +-1 without overflow). The loop runs on u = 2 c m / lr,
    so that each step is u -= tanh(Z / 2) + (1 - 2Y), with Z / 2 = (lr / 2m) (K + 1) u.
    """
    import numpy as np

    from .model import cost

    m = len(y)
    scale = lr / (2 * m)  # c = scale * u
    K += 1.0
    K *= 0.5 * scale  # K now maps u to Z / 2
    u = np.zeros(m, K.dtype)
    half_z = np.empty(m, K.dtype)
    shift = 1.0 - 2.0 * y
    costs = []
    dot, tanh = np.dot, np.tanh
    with np.errstate(over="ignore", invalid="ignore"):  # divergence is reported by name
        # |u_k| grows by at most 2 per step, so |Z / 2| <= 2 iters * max row sum of |K|:
        # when that cannot overflow, no per-iteration check is needed.
        check = not float(np.abs(K).sum(axis=1).max()) * 2.0 * iters < 1e300
        for i in range(iters):
            dot(K, u, out=half_z)
            if check and not math.isfinite(half_z.sum()):
                _diverged(i, lr)
            if i % cost_every == 0:
                costs.append(cost(2 * half_z, y))
                if callback is not None:
                    callback(i, costs[-1])
            tanh(half_z, out=half_z)
            half_z += shift
            u -= half_z  # c -= lr (A - Y) / m
        z = 2 * (K @ u)
    if not np.isfinite(z).all():
        _diverged(iters, lr)
    c = scale * u
    return c, float(c.sum()), costs, z


def primal(X, y, lr, iters, cost_every=100, callback=None):
    """The course's loop, vectorized over X (n_x, m). Returns (w (n_x,), b, costs)."""
    import numpy as np

    from .model import cost, sigmoid

    n_x, m = X.shape
    step = lr / m
    w = np.zeros(n_x, X.dtype)
    b = 0.0
    costs = []
    with np.errstate(over="ignore", invalid="ignore"):
        for i in range(iters):
            z = w @ X
            z += b
            if not math.isfinite(z.sum()):
                _diverged(i, lr)
            if i % cost_every == 0:
                costs.append(cost(z, y))
                if callback is not None:
                    callback(i, costs[-1])
            dz = sigmoid(z)
            dz -= y
            w -= step * (X @ dz)
            b -= step * float(dz.sum())
    if not (np.isfinite(w).all() and math.isfinite(b)):
        _diverged(iters, lr)
    return w, b, costs


def _diverged(i: int, lr: float):
    raise CatlrError(f"training diverged at iteration {i} (weights are no longer finite "
                     f"with --lr {lr:g}), use a smaller learning rate such as --lr {lr / 10:g} "
                     "(the course uses 0.005)")
