"""Export: SavedModels in TF Serving's layout that serve raw text with core TensorFlow ops."""

from keras_llm.export.saved_model import GENERATION_DEFAULTS, export, serving_tokenizer

__all__ = ["GENERATION_DEFAULTS", "export", "serving_tokenizer"]
