"""nnspec.runtime: training (runtime.train, runtime.run) and inference through onnxruntime.

``Session`` imports onnxruntime only when a model is opened.
"""

from .inference import PredictError, Prediction, Session

__all__ = ["PredictError", "Prediction", "Session"]
