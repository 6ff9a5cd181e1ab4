"""The two forms of gradient descent, and which costs less on this machine.

    primal  the course's loop: two passes over X (n_x x m) per iteration
    dual    K = X.T X (m x m) built once, then one m x m product per iteration
descent.py runs both; this module only prices them, so that the estimator (model.py)
and the planner (engines/) choose alike.
"""

from __future__ import annotations

# What each form costs on a machine, in seconds per unit, measured on a 2-core AMD EPYC
# (python bench/train_speed.py --forms measures them again and checks the choice):
K_TIME = 20e-12        # per m^2 n_x: K = X.T X from the pixels, a symmetric rank-k update
DUAL_STEP = 1.2e-9     # per m^2: one dual iteration, an m x m product in float64
X_TIME = 2e-9          # per m n_x: building X from the pixels
PRIMAL_BYTE = 0.11e-9  # per byte of X: one primal iteration reads X twice, bound by memory


def form_costs(n_x: int, m: int, iters: int, itemsize: int = 4) -> dict:
    """Estimated seconds of each form: K at BLAS speed then m^2 per step for the dual,
    X then two passes over it per step (memory bandwidth) for the primal."""
    return {"dual": K_TIME * m * m * n_x + iters * DUAL_STEP * m * m,
            "primal": X_TIME * m * n_x + iters * PRIMAL_BYTE * m * n_x * itemsize}


def choose_form(n_x: int, m: int, iters: int, itemsize: int = 4) -> str:
    """The form that costs less on this machine (form_costs): 'dual' or 'primal'.

    `itemsize` is the primal form's float size (4: float32, its default)."""
    costs = form_costs(n_x, m, iters, itemsize)
    return "dual" if m < n_x and costs["dual"] < costs["primal"] else "primal"
