"""Generation: producing text from causal language models."""

from keras_llm.generation.sampling import generate

__all__ = ["generate"]
