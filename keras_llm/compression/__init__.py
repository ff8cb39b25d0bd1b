"""Compression: making a trained model smaller and cheaper to serve.

- `quantize`: `keras_llm.quantize(model, mode)`, Keras's own quantization
  (`int8` weights and activations, or int8 weights alone with
  `weights_only=True`; `int4` weights; GPTQ, AWQ and float8 refused by name)
  applied to every keras_llm model, its tied embedding
  included; a quantized model saves to `.keras`, loads back with
  `keras.saving.load_model` and exports with `keras_llm.export`.

LoRA fine-tuning and distillation, which train, are in `keras_llm.training`.
"""

from keras_llm.compression.quantize import MODES, quantize

__all__ = ["MODES", "quantize"]
