"""`OffsetDense`: Keras's `Dense`, whose int4 blocks also carry a float offset (GGUF's Q4_0/Q4_1)."""

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="keras_llm")
class OffsetDense(keras.layers.Dense):
    """A `keras.layers.Dense` whose int4 blocks can hold GGUF's 4-bit blocks exactly.

    Float, int8 and per-channel int4 layers are Keras's `Dense` unchanged.
    Quantized to int4 in blocks (`Int4QuantizationConfig(block_size=...)`,
    `keras_llm.quantize(model, "int4")`), Keras computes each kernel value
    as `(q - zero) * scale` with a 4-bit `q` and, per block of inputs and
    output, a float `scale` and an *integer* `zero`. llama.cpp's Q4_1 blocks
    are `d * q + m` with a float minimum `m`, which no integer zero point
    holds, so re-quantizing them onto Keras's grid rounds every weight a
    second time (SmolLM2-135M's Q4_1 file: perplexity +40%). This layer adds
    one float `kernel_offset` per block and output (`[groups, units]`,
    zeros unless written), so a kernel value is
    `(q - zero) * scale + offset`: with `q - 8`, `zero = 0`, `scale = d` and
    `offset = m + 8 d` it is Q4_1's value (Q4_0: `offset = 0`).
    `keras_llm.from_pretrained(path, keep_quantized=True)` writes them.

    The offset's share of the product is one small matmul: the inputs summed
    over each block (`[..., groups]`) times the offsets (`[groups, units]`),
    1/`block_size` of the kernel's multiply-adds, in core TensorFlow ops.
    Everything else (the packed kernel, scales, zero points, saving and
    loading through `.keras`, the `int4/N` dtype policy) is Keras's. The
    offset term is added after Keras's product, so the layer takes no
    `activation`; LoRA is refused on a layer whose offsets are written
    (Keras merges adapters into the 4-bit grid, which would drop them).

    Args:
        units: Output width.
        **kwargs: `keras.layers.Dense`'s (`use_bias`, `kernel_initializer`,
            `dtype`, `name`, ...), except `activation`.

    Example:

    ```python
    import numpy as np
    import keras
    import keras_llm

    layer = keras_llm.layers.OffsetDense(3, use_bias=False)
    layer.build((None, 64))
    layer.quantize("int4", config=keras.quantizers.Int4QuantizationConfig(block_size=32))
    x = np.random.default_rng(0).normal(size=(1, 64)).astype("float32")
    before = np.asarray(layer(x))
    layer.kernel_offset.assign([[1.0, 0.0, 0.0], [0.0, 0.0, 2.0]])  # 2 blocks of 32 inputs
    added = np.stack([x[:, :32].sum(-1), 0 * x[:, 0], 2 * x[:, 32:].sum(-1)], axis=-1)
    assert np.allclose(np.asarray(layer(x)), before + added, atol=1e-4)
    ```
    """

    def __init__(self, units, **kwargs):
        if kwargs.get("activation") not in (None, "linear"):
            raise ValueError(
                "`OffsetDense` is a projection: its offsets are added after the product, so it "
                f"takes no activation. Received: activation={kwargs['activation']!r}"
            )
        super().__init__(units, **kwargs)

    def quantize(self, mode=None, type_check=True, config=None):
        # Keras's `Dense.quantize` refuses subclasses (`type_check`), which may
        # change the kernel's meaning; this one only adds variables to int4.
        super().quantize(mode, type_check=False, config=config)

    def _int4_build(self, kernel_shape, config=None):
        super()._int4_build(kernel_shape, config)
        if getattr(self, "_int4_block_size", None) not in (None, -1):
            self.kernel_offset = self.add_weight(
                name="kernel_offset",
                shape=tuple(self.kernel_scale.shape),
                initializer="zeros",
                trainable=False,
            )

    def _int4_call(self, inputs, training=None):
        outputs = super()._int4_call(inputs, training=training)
        if not hasattr(self, "kernel_offset"):
            return outputs
        # inputs = [..., I]; offsets = [G, U] for G blocks of `block_size` inputs
        block_size = self._int4_block_size
        groups = self.kernel_offset.shape[0]
        missing = groups * block_size - self._orig_input_dim
        if missing:  # a last block shorter than the others: zeros add nothing to its sum
            inputs = ops.pad(inputs, [(0, 0)] * (len(inputs.shape) - 1) + [(0, missing)])
        shape = ops.shape(inputs)
        sums = ops.sum(ops.reshape(inputs, (*shape[:-1], groups, block_size)), axis=-1)  # [..., G]
        offsets = ops.cast(self.kernel_offset, self.compute_dtype)
        return ops.add(outputs, ops.cast(ops.matmul(sums, offsets), outputs.dtype))  # [..., U]

    @property
    def variable_serialization_spec(self):
        spec = dict(super().variable_serialization_spec)
        if hasattr(self, "kernel_offset"):
            spec["int4"] = [*spec["int4"], "kernel_offset"]
        return spec

    def enable_lora(self, rank, lora_alpha=None, a_initializer="he_uniform",
                    b_initializer="zeros"):
        if hasattr(self, "kernel_offset") and np.any(np.asarray(self.kernel_offset) != 0):
            raise ValueError(
                f"Layer {self.path!r} holds a GGUF file's 4-bit blocks with offsets, which LoRA "
                "cannot be merged into (Keras re-quantizes a merged kernel without them); load "
                f"the file with keep_quantized=False to fine-tune it. Received: rank={rank!r}"
            )
        super().enable_lora(rank, lora_alpha=lora_alpha, a_initializer=a_initializer,
                            b_initializer=b_initializer)
