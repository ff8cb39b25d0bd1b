"""Compression: making a trained model smaller and cheaper to serve.

- `quantize`: `keras_llm.quantize(model, mode)`, Keras's own quantization
  (`int8` weights and activations, or int8 weights alone with
  `weights_only=True`; `int4` weights; `gptq` and `awq`, 4-bit weights of a
  causal LM's blocks calibrated on text; float8 refused by name) applied to
  every keras_llm model, its tied embedding included; a quantized model
  saves to `.keras`, loads back with `keras.saving.load_model` and exports
  with `keras_llm.export`.
- `keras_fixes`: three fixes to Keras 3.15's GPTQ and AWQ (statistics that
  never reached them, zero points left out of `.keras` files, GPTQ's
  per-column XLA compilations), each naming when it can go.

LoRA fine-tuning and distillation, which train, are in `keras_llm.training`.
"""

from keras_llm.compression.quantize import CALIBRATED_MODES, MODES, quantize

__all__ = ["CALIBRATED_MODES", "MODES", "quantize"]
