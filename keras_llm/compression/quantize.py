"""`keras_llm.quantize`: Keras's quantization, applied to every keras_llm model."""

import contextlib
import gc
import warnings

import keras
import numpy as np

from keras_llm._checks import check_int
from keras_llm.compression import keras_fixes
from keras_llm.layers.token_and_position_embedding import ReversibleEmbedding
from keras_llm.models.registry import special_tokens

keras_fixes.install()  # GPTQ/AWQ layers save their zero points (Keras 3.15 drops them)

# The modes `keras_llm.quantize` takes; the last two calibrate on text
# (`calibration=`). Keras's others are refused by name (`_REFUSED`, the
# reason each is not served).
MODES = ("int8", "int4", "gptq", "awq")
CALIBRATED_MODES = ("gptq", "awq")
_REFUSED = {
    "float8": "a training format whose matmuls only recent GPUs run; on a CPU it would serve "
    "slower than float32 and no smaller than int8",
}


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


def quantize(
    model,
    mode,
    *,
    block_size=None,
    weights_only=False,
    calibration=None,
    num_samples=128,
    sequence_length=None,
):
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

    - `"gptq"` and `"awq"`: 4-bit weights in blocks of `block_size` (a
      float scale and an integer zero point per block), chosen on
      `calibration` text by Keras's GPTQ (each projection's rounding error
      corrected on the columns not yet rounded, weighted by its inputs'
      second moments) or AWQ (each input channel scaled by its activations'
      size before rounding). They calibrate a causal language model (GPT,
      Llama) block by block, so they quantize the projections inside its
      decoder blocks; the token table and an untied head stay float32
      (Keras calibrates only the blocks: a layer outside them would be
      rounded without calibration). Activations stay float. Other tasks
      are refused by name, and so is LoRA on the result (Keras has none
      for these layers). Three fixes to Keras 3.15 make these modes work:
      its statistics reach the layers, its `.keras` files keep the zero
      points, and its GPTQ compiles no XLA op per column
      (`keras_llm/compression/keras_fixes.py`).

    float8 is refused (a training format of recent GPUs).

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
        mode: One of `keras_llm.compression.MODES`: `"int8"`, `"int4"`,
            `"gptq"` or `"awq"`.
        block_size: `"int4"`'s, `"gptq"`'s and `"awq"`'s block of input
            values sharing a scale (default 128; Keras's `group_size` for
            the last two), or -1 for one scale per output channel.
        weights_only: `"int8"` only: quantize the weights and keep the
            activations float (Keras's `Int8QuantizationConfig(
            activation_quantizer=None)`); recorded in the model's config, so
            a `.keras` file and an export compute the same.
        calibration: `"gptq"` and `"awq"` only, and required there: texts
            (a list of strings, read with `model.tokenizer` and joined with
            its end token) or token ids (a list of int arrays, joined as
            given) that the calibration windows are cut from.
        num_samples: How many windows of `sequence_length` tokens calibrate
            (Keras's default, 128); a shorter calibration text is repeated.
        sequence_length: The windows' length (default: 512 or the model's
            context, whichever is shorter).

    Returns:
        `model`, quantized.

    Raises:
        ValueError: an unknown or refused `mode`, a model already quantized
            (nothing is changed), `block_size` with a mode other than
            `"int4"`, `"gptq"` or `"awq"`, or not a positive int or -1,
            `weights_only` with a mode other than `"int8"` or not a bool;
            `calibration` missing, empty or given to another mode, a
            calibrated mode on a model that is not a causal LM, texts for a
            model without a tokenizer, `num_samples` or `sequence_length`
            not a positive int, or `sequence_length` over the context.

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
    if block_size is not None:
        if mode not in ("int4",) + CALIBRATED_MODES:
            raise ValueError(
                f"`block_size` is an option of modes 'int4', 'gptq' and 'awq'. Received: "
                f"block_size={block_size!r}, mode={mode!r}"
            )
        if not isinstance(block_size, int) or isinstance(block_size, bool) or (
            block_size <= 0 and block_size != -1
        ):
            raise ValueError(
                "`block_size` must be a positive int or -1 (one scale per output channel). "
                f"Received: block_size={block_size!r}"
            )
    filters = _is_projection
    if mode in CALIBRATED_MODES:
        config, filters = _calibration_config(
            model, mode, calibration, block_size, num_samples, sequence_length
        )
        mode = None  # Keras reads it from the config
    elif calibration is not None:
        raise ValueError(
            f"`calibration` is an option of modes 'gptq' and 'awq'. Received: mode={mode!r}"
        )
    elif block_size is not None:
        config = keras.quantizers.Int4QuantizationConfig(block_size=block_size)
        mode = None
    else:
        config = None
    with warnings.catch_warnings():
        # Keras's quantizers read variables through NumPy, which warns about
        # `__array__`'s `copy` argument under NumPy 2 (harmless).
        warnings.filterwarnings("ignore", message=".*__array__ implementation.*")
        with collected_once(), keras_fixes.calibrating():
            model.quantize(mode, config=config, filters=filters)
    if weights_only:
        _keep_activations_float(model)
    return model


def _calibration_config(model, mode, calibration, block_size, num_samples, sequence_length):
    """Keras's `GPTQConfig` or `AWQConfig` for `model`, and a filter of the layers it calibrates.

    Keras calibrates the Dense and EinsumDense layers inside the blocks that
    `model.get_quantization_layer_structure` names; the filter keeps
    `model.quantize` from quantizing any other layer, which Keras 3.15 would
    round without calibration and then save without its float kernel
    (fixed upstream in keras-team/keras#23321).
    """
    structure = model.get_quantization_layer_structure(mode)
    if structure is None:
        raise ValueError(
            f"mode={mode!r} calibrates the decoder blocks of a causal language model (build_gpt, "
            f"build_llama, or one read by from_pretrained); model {model.name!r} is a "
            f"{getattr(model, 'task', 'model of another kind')}. Use mode 'int4' or 'int8'."
        )
    check_int("num_samples", num_samples, where="quantize")
    context = model.max_sequence_length
    if sequence_length is None:
        sequence_length = min(512, context)
    check_int("sequence_length", sequence_length, where="quantize")
    if sequence_length > context:
        raise ValueError(
            f"quantize: `sequence_length` must be at most the model's context ({context}). "
            f"Received: sequence_length={sequence_length}"
        )
    ids = _calibration_ids(model, mode, calibration)
    inside = {
        id(layer)
        for block in structure["sequential_blocks"]
        for layer in block._flatten_layers()
        if isinstance(layer, (keras.layers.Dense, keras.layers.EinsumDense))
    }
    config_class = keras.quantizers.GPTQConfig if mode == "gptq" else keras.quantizers.AWQConfig
    config = config_class(
        # Keras cuts the windows from the ids; it asks for a tokenizer even
        # when given ids, and reads it only for strings.
        dataset=[ids],
        tokenizer=_TOKEN_IDS,
        num_samples=num_samples,
        sequence_length=sequence_length,
        group_size=128 if block_size is None else block_size,
    )
    return config, lambda layer: id(layer) in inside


# What `_calibration_config` gives Keras as the tokenizer of token ids.
_TOKEN_IDS = "token ids"


def _calibration_ids(model, mode, calibration):
    """`calibration` as one int32 array of ids: texts tokenized and joined with the end token."""
    if calibration is None:
        raise ValueError(
            f"mode={mode!r} needs `calibration`: texts (a list of strings) or token ids (a list "
            "of int arrays) that its windows are cut from. Received: calibration=None"
        )
    if isinstance(calibration, (str, bytes)) or not hasattr(calibration, "__iter__"):
        raise ValueError(
            "`calibration` must be a list of texts or of token-id arrays, not a single "
            f"{type(calibration).__name__}. Received: calibration={calibration!r:.80}"
        )
    items = list(calibration)
    texts = [isinstance(item, str) for item in items]
    if any(texts):
        if not all(texts):
            raise ValueError(
                "`calibration` must be all texts or all token-id arrays. Received: item "
                f"{texts.index(False)} is a {type(items[texts.index(False)]).__name__}"
            )
        tokenizer = model.tokenizer
        if tokenizer is None:
            raise ValueError(
                f"`calibration` texts are read with the model's tokenizer, and model "
                f"{model.name!r} has none: pass token ids, or build it with `tokenizer=`."
            )
        end = special_tokens(model, tokenizer).get("end_token_id")
        pieces = []
        for text in items:
            pieces.append(np.asarray(tokenizer.tokenize(text), "int32").reshape(-1))
            if end is not None:
                pieces.append(np.array([end], "int32"))
    else:
        pieces = []
        for i, item in enumerate(items):
            array = np.asarray(item)
            if array.dtype.kind not in "iu" or (
                array.size and (array.min() < 0 or array.max() >= model.vocabulary_size)
            ):
                raise ValueError(
                    f"`calibration[{i}]` must hold token ids, ints in [0, "
                    f"{model.vocabulary_size}). Received: dtype {array.dtype}"
                    + (f", values {array.min()}..{array.max()}" if array.size else "")
                )
            pieces.append(array.astype("int32").reshape(-1))
    ids = np.concatenate(pieces) if pieces else np.zeros((0,), "int32")
    if not ids.size:
        raise ValueError(f"`calibration` holds no tokens. Received: {len(items)} items")
    return ids


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
