"""nnspec.runtime: running what was compiled, in four sub-packages by concern.

    experiments/   runs, many processes, cross-validation, search, ensembles, solvers, kNN
        │ uses
    loop/          the training loop: one epoch, checkpoints, reports (knows no experiment)
        │ uses
    data/          data sources, splits applied, augmentation, tensors for the loop
    inference/     onnxruntime sessions over exported models (uses data's normaliser only)

``Session`` imports onnxruntime only when a model is opened.
"""

from nnspec.runtime.inference import PredictError, Prediction, Session

__all__ = ["PredictError", "Prediction", "Session"]
