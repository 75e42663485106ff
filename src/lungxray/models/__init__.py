"""Model registry and builders. Importing this package registers every built-in model."""

from . import classifiers, library, lungenc, xrnet  # noqa: F401  (registers models)
from .registry import Classifier, ModelSpec, create_model, get_spec, list_models, register_model

__all__ = ["Classifier", "ModelSpec", "create_model", "get_spec", "list_models", "register_model"]
