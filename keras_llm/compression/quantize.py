"""`keras_llm.quantize`: Keras's quantization, applied to every keras_llm model."""

import contextlib
import gc
import warnings

import keras

from keras_llm.layers.token_and_position_embedding import ReversibleEmbedding

# The modes `keras_llm.quantize` takes. Keras's others are refused by name
# (`_REFUSED`, the reason each is not served).
MODES = ("int8", "int4")
_REFUSED = {
    "float8": "a training format whose matmuls only recent GPUs run; on a CPU it would serve "
    "slower than float32 and no smaller than int8",
    # keras/src/layers/core/dense.py and einsum_dense.py, `save_own_variables`:
    # in mode "gptq" the zero points are skipped (`_get_kernel_with_merged_lora`
    # returns none for it) while `load_own_variables` expects them, so
    # `keras.saving.load_model` fails ("expected 4 variables, but received 3").
    # Decoders give Keras the structure it calibrates (`DecoderModel.
    # get_quantization_layer_structure`): `model.quantize("gptq", config=...)`
    # works in memory. Accept the modes here once the saved model loads.
    "gptq": "Keras 3.15 saves a GPTQ-quantized layer without its zero points, so the model "
    "does not load back from .keras (the same holds for AWQ); use 'int4', which quantizes "
    "weights to 4 bits in blocks of 128 without a calibration set",
}
_REFUSED["awq"] = _REFUSED["gptq"]


def _is_projection(layer):
    """A layer Keras quantizes and keras_llm's models hold: a projection or a token table.

    Keras's own `Embedding` quantizes only its exact class; BERT's segment
    table (a subclass of two rows) stays float, as do the position tables.
    """
    return isinstance(
        layer, (keras.layers.Dense, keras.layers.EinsumDense, ReversibleEmbedding)
    ) or type(layer) in (keras.layers.Embedding, keras.layers.ReversibleEmbedding)


def _quantized_layers(model):
    return [layer for layer in model._flatten_layers() if layer.quantization_mode is not None]


def quantize(model, mode, *, block_size=None, weights_only=False):
    """Quantizes `model`'s weights in place with Keras's `model.quantize`; returns `model`.

    Every projection of a keras_llm model is quantized: the attention and
    feed-forward kernels of `TransformerBlock` and `LlamaBlock`, the heads
    (a classifier's, a tagger's, BERT's pooler, an untied LM head) and the
    token embedding, whose tied reverse projection (GPT, BERT's masked-LM
    head, tied Llama and seq2seq models) is then computed from the
    quantized table too. LayerNorms, RMSNorms, position tables and BERT's
    two-row segment table stay float. The modes are Keras's:

    - `"int8"`: weights int8 with one abs-max scale per output channel
      (`w_q = round(127 w / max|w[:, j]|)`; the embedding, one per token row),
      activations quantized dynamically per token the same way, and the
      product computed as an int8 x int8 -> int32 matmul (W8A8): weights
      take a quarter of float32's memory.
      With `weights_only=True` the activations stay float: the int8 weights
      are cast to float in each product (`(x @ q(W)) / s_W`), the same
      memory, closer outputs (SmolLM2-135M's perplexity: +0.8% against
      W8A8's +5%, `benchmarks/RESULTS.md`), a float32 matmul's speed.
    - `"int4"`: weights only, 4-bit (two values a byte) in blocks of
      `block_size` input values (default Keras's 128) with a scale and a
      zero point per block, or symmetric per output channel with
      `block_size=-1`; activations stay float.

    GPTQ and AWQ (Keras's calibrated 4-bit modes) are refused: Keras 3.15
    saves their layers without the zero points, so the model would not load
    back from `.keras`. float8 is refused too (a training format of recent
    GPUs).

    A quantized model saves to `.keras` and loads back with
    `keras.saving.load_model` and no custom objects (each layer's config
    records its quantized parts' dtype policies), with the same outputs;
    `keras_llm.export` serves it (the int8 matmuls run in TensorFlow's core
    ops). Quantized weights do not train: quantize a trained model.

    A GGUF checkpoint read by `keras_llm.from_pretrained` is dequantized to
    float32 on reading, and quantizing it here rounds its weights a second
    time (Keras's int4 zero points are integers, which cannot hold Q4_1's
    per-block minimums: SmolLM2-135M's perplexity +40%). To keep a file's
    Q4_0/Q4_1 projections as they are, read it with
    `keras_llm.from_pretrained(path, keep_quantized=True)` instead (Keras's
    int4 layout plus a float offset per block, `keras_llm.layers.OffsetDense`).
    Q8_0 and the K formats have no such layout (Keras's int8 has one scale
    per output channel, not per block of 32) and are read as float32.

    Args:
        model: A built keras_llm model (any builder's, or one loaded from
            `.keras` or `from_pretrained`), not yet quantized.
        mode: One of `keras_llm.compression.MODES`: `"int8"` or `"int4"`.
        block_size: `"int4"`'s block of input values sharing a scale
            (default 128), or -1 for one scale per output channel.
        weights_only: `"int8"` only: quantize the weights and keep the
            activations float (Keras's `Int8QuantizationConfig(
            activation_quantizer=None)`); recorded in the model's config, so
            a `.keras` file and an export compute the same.

    Returns:
        `model`, quantized.

    Raises:
        ValueError: an unknown or refused `mode`, a model already quantized
            (nothing is changed), `block_size` with a mode other than
            `"int4"` or not a positive int or -1, `weights_only` with a mode
            other than `"int8"` or not a bool.

    Example:

    ```python
    import numpy as np
    import keras_llm

    model = keras_llm.build_gpt("gpt_nano", num_layers=1)
    inputs = {"token_ids": np.array([[72, 105, 33]], "int32"),
              "padding_mask": np.ones((1, 3), "int32")}
    before = np.asarray(model(inputs))
    keras_llm.quantize(model, "int8")
    after = np.asarray(model(inputs))
    assert model.get_layer("embeddings").token_embedding.quantization_mode == "int8"
    assert np.abs(after - before).max() < 0.05 * np.abs(before).max()
    ```
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"`model` must be a keras_llm model (a keras.Model). Received: model={model!r}"
        )
    name = model.name
    if mode not in MODES:
        reason = f" ({mode} is refused: {_REFUSED[mode]})" if mode in _REFUSED else ""
        raise ValueError(
            f"`mode` must be one of {', '.join(map(repr, MODES))}{reason}. "
            f"Received: mode={mode!r}"
        )
    quantized = _quantized_layers(model)
    if quantized:
        layer = quantized[0]
        raise ValueError(
            f"Model {name!r} is already quantized (its layer {layer.path!r} is "
            f"{layer.quantization_mode}); quantize the float model instead. "
            f"Received: mode={mode!r}"
        )
    if not model.built:
        raise ValueError(f"`model` must be built before it is quantized. Received: model={name!r}")
    if not isinstance(weights_only, bool):
        raise ValueError(f"`weights_only` must be a bool. Received: weights_only={weights_only!r}")
    if weights_only and mode != "int8":
        raise ValueError(
            f"`weights_only` is an option of mode='int8' ('int4' is always weights-only). "
            f"Received: weights_only=True, mode={mode!r}"
        )
    config = None
    if block_size is not None:
        if mode != "int4":
            raise ValueError(
                f"`block_size` is an option of mode='int4'. Received: block_size={block_size!r}, "
                f"mode={mode!r}"
            )
        if not isinstance(block_size, int) or isinstance(block_size, bool) or (
            block_size <= 0 and block_size != -1
        ):
            raise ValueError(
                "`block_size` must be a positive int or -1 (one scale per output channel). "
                f"Received: block_size={block_size!r}"
            )
        config = keras.quantizers.Int4QuantizationConfig(block_size=block_size)
    with warnings.catch_warnings():
        # Keras's quantizers read variables through NumPy, which warns about
        # `__array__`'s `copy` argument under NumPy 2 (harmless).
        warnings.filterwarnings("ignore", message=".*__array__ implementation.*")
        with collected_once():
            model.quantize(None if config else mode, config=config, filters=_is_projection)
    if weights_only:
        _keep_activations_float(model)
    return model


@contextlib.contextmanager
def collected_once():
    """Runs the block with one garbage collection at its end instead of one per dropped weight.

    Keras's `Layer.__delattr__` calls `gc.collect()` each time a layer drops
    a variable, and `model.quantize` drops each projection's float kernel: a
    full collection of the whole process per projection, whose cost grows
    with everything the process holds (0.34 s each in the test suite's
    processes, 210 of them for SmolLM2-135M). Objects that exist before
    the block are frozen (`gc.freeze`: left out of collections) while it
    runs, so each of those collections only looks at what the block made;
    the float kernels are freed by reference counting either way, and one
    full collection at the end releases anything left in cycles, which
    is what Keras's calls are for. A process that froze objects itself
    (`gc.get_freeze_count()`, a pre-fork server) is left as it is.
    """
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.collect()


def _keep_activations_float(model):
    """Makes every int8 layer of `model` weights-only: its inputs are no longer quantized.

    Keras's int8 layers quantize their inputs when they have an
    `inputs_quantizer` (`Int8QuantizationConfig`'s activation quantizer);
    without one they multiply float inputs by the int8 weights cast to float.
    Set here on built layers, not passed to `model.quantize` as a config:
    the layers keras_llm's composite layers hold are rebuilt from their
    dtype policy alone when a `.keras` file loads (their own configs are not
    saved), so the model records the choice (`quantization_config`) and
    `restore_quantization` applies it again after the rebuild.
    """
    config = keras.quantizers.Int8QuantizationConfig(activation_quantizer=None)
    for layer in _quantized_layers(model):
        if layer.quantization_mode == "int8":
            layer.quantization_config = config
            layer.inputs_quantizer = None


def quantization_config(model):
    """What a keras_llm model's config records of its quantization beyond dtype policies.

    `{"weights_only": True}` for a model `quantize(..., weights_only=True)`
    made (its int8 layers have no input quantizer), else None. keras_llm's
    models put it in their `get_config()` under `"quantization"` and give it
    to `restore_quantization` when a `.keras` file rebuilds them.
    """
    int8 = [layer for layer in _quantized_layers(model) if layer.quantization_mode == "int8"]
    if int8 and all(layer.inputs_quantizer is None for layer in int8):
        return {"weights_only": True}
    return None


def restore_quantization(model, settings):
    """Applies what `quantization_config` recorded to a model rebuilt from its config."""
    if settings and settings.get("weights_only"):
        _keep_activations_float(model)
