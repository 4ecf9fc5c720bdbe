"""nnspec.runtime.inference: running an exported ONNX model through onnxruntime.

``Session`` opens a model written by ``nnspec export`` (its metadata carries the task, the
class names and the normaliser) and predicts from arrays or files; onnxruntime is imported
only when a model is opened, and torch never.
"""

from nnspec.runtime.inference.session import PredictError, Prediction, Session

__all__ = ["PredictError", "Prediction", "Session"]
