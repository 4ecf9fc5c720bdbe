"""nnspec.runtime.loop: the training loop and what it needs per step.

``trainer.Trainer`` runs epochs of a recipe over prepared data and writes the run's
checkpoints and reports; ``objectives`` (losses, metrics), ``optim`` (optimizers,
schedules, regularisation, clipping), ``init`` (initialisation schemes), ``transfer``
(initial weights, freezing, per-layer learning rates), ``checkpoint`` (safetensors,
atomic writes) and ``report`` (curves, summary) serve it.

The loop is the innermost piece of the runtime: it knows nothing of the experiments that
drive it (runs, cross-validation, search, ensembles, solvers, many processes). They plug in
through ``hooks``: a :class:`~nnspec.runtime.loop.hooks.Collective` for the processes the
loop runs in and an epoch function for a solver that replaces gradient descent.
"""
