"""nnspec.runtime.data: where samples come from and how a recipe prepares them.

``sources`` reads data sets (built-in, CSV, .npz, IDX, image folders) into a
:class:`~nnspec.runtime.data.sources.Dataset` with numpy only; ``augment`` is the seeded
augmentation pipeline; ``prepare`` splits, normalises and turns a data set into the tensors
the training loop takes (:class:`~nnspec.runtime.data.prepare.PreparedData`).
"""
