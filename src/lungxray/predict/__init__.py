"""Prediction: `Predictor` (the one inference pipeline) and `predict_to_folder` (what `lungxray predict` runs).

Modules: `results` (result types, the shipped model's notices), `inputs` (which files), `masks` (where each
input's lung mask comes from), `explain` (Grad-CAM), `predictor` (read -> preprocess -> mask -> classify),
`writer` (predictions.csv/json, overlays). `report/` and `serve/` import result types from here.
"""

from .explain import make_gradcam
from .inputs import discover_inputs, overlay_names
from .predictor import Predictor
from .results import DEFAULT_MODEL, INTENDED_USE, MODEL_CARD, NOTICE, InputFile, PredictionResult
from .writer import PredictionRun, predict_to_folder

__all__ = [
    "DEFAULT_MODEL",
    "INTENDED_USE",
    "MODEL_CARD",
    "NOTICE",
    "InputFile",
    "PredictionResult",
    "PredictionRun",
    "Predictor",
    "discover_inputs",
    "make_gradcam",
    "overlay_names",
    "predict_to_folder",
]
