"""The learning, in the course's notation (X is n_x x m): the objective (loss), X's products
a block at a time (design, kernels), the estimator (model), gradient descent and the other
solvers (descent), the two forms' costs (forms), the figures (metrics)."""
