"""nnspec.runtime.experiments: what drives the training loop.

``run`` (a run directory, resume, one process or many), ``distributed`` (process groups:
DDP over gloo or NCCL, spawn and torchrun), ``cv`` (k-fold cross-validation), ``search``
and ``search_report`` (hyperparameter search and its table, plot and best spec),
``ensemble`` (n members, one ONNX graph), ``solver`` (the closed-form normal equation) and
``knn`` (storing the training split, k by cross-validation). Each uses the loop in
``nnspec.runtime.loop``; the loop never imports them.
"""
