"""The two forms of gradient descent, and which costs less on this machine.

    primal  the course's loop: two products over the pixels per iteration (one read of them)
    dual    K = X.T X (m x m) built once, then one m x m product per iteration
descent.py runs both; this module only prices them, so that the estimator (model.py)
and the planner (engines/) choose alike.
"""

from __future__ import annotations

from . import kernels

# What each form costs on a machine, in seconds per unit: a 2-core AMD EPYC shared with
# other work (python bench/train_speed.py --forms, and --one-core, which times each part
# on one core by its CPU time, halved for two: there two threads' wall time was mostly
# their waiting for each other; both check the choice at m = 1,000 to 4,000):
K_TIME = 13e-12        # per m^2 n_x: K = X.T X from the pixels, a symmetric rank-k update
DUAL_STEP = 0.3e-9     # per m^2: one dual iteration, an m x m product in float64
# per pixel (m n_x), one primal iteration: both products on the uint8 pixels, by the size
# of the floats they are computed in. On the compiled kernels (numba installed): one core's
# CPU time, halved. On NumPy's path: two threads' wall time at a load of 2, which is 6 to
# 10 times one core's CPU time halved: it converts 4 MB of rows at a time and multiplies
# each by BLAS, whose two threads meet at every product
PRIMAL_PIXEL = {4: 0.07e-9, 8: 0.11e-9}
PRIMAL_PIXEL_NUMPY = {4: 2.0e-9, 8: 4.9e-9}


def form_costs(n_x: int, m: int, iters: int, itemsize: int = 4, compiled=None) -> dict:
    """Estimated seconds of each form: K at BLAS speed then m^2 per step for the dual, two
    products over the pixels per step for the primal. `compiled`: whether the primal
    passes run on the compiled kernels (None: whether they would here, kernels.available)."""
    if compiled is None:
        compiled = kernels.available()
    per_pixel = (PRIMAL_PIXEL if compiled else PRIMAL_PIXEL_NUMPY)[8 if itemsize >= 8 else 4]
    return {"dual": K_TIME * m * m * n_x + iters * DUAL_STEP * m * m,
            "primal": iters * per_pixel * m * n_x}


def choose_form(n_x: int, m: int, iters: int, itemsize: int = 4, compiled=None) -> str:
    """The form that costs less on this machine (form_costs): 'dual' or 'primal'.

    `itemsize` is the primal form's float size (4: float32, its default); `compiled` as for
    form_costs."""
    costs = form_costs(n_x, m, iters, itemsize, compiled)
    return "dual" if m < n_x and costs["dual"] < costs["primal"] else "primal"
