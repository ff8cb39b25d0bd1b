"""The files the commands write and read: `.keras` models that carry their tokenizer, and exports.

A model is saved with its tokenizer inside (`model.tokenizer`, in the
`.keras` file's config). A `.keras` file of an earlier keras-llm carries none
and has its tokenizer beside it as `NAME.tokenizer.json`: it still loads,
with a message asking to save it again.
"""

import importlib.util
import json
import logging
import os

import keras
import tensorflow as tf

import keras_llm
from keras_llm._atomic import atomic_output

logger = logging.getLogger("keras_llm.cli")


def save_and_export(args, stem, model, tokenizer, **export_arguments):
    """Saves `args.output` with `tokenizer` inside, then exports it to `args.export`
    (default saved_models/NAME); returns the version directory."""
    model.tokenizer = tokenizer  # checked against the model; travels in the .keras file
    with atomic_output(args.output) as temporary:
        model.save(temporary)
    print(f"saved: {args.output} (its tokenizer inside)")
    export_base = args.export or os.path.join("saved_models", os.path.basename(stem))
    # The tokenizer is passed explicitly until keras_llm.export defaults to model.tokenizer.
    version = keras_llm.export(model, export_base, tokenizer, **export_arguments)
    print(f"exported for TF Serving: {version}")
    return version


def check_plot(parser, args):
    """--plot needs matplotlib: a one-line error before training rather than after it."""
    if getattr(args, "plot", False) and importlib.util.find_spec("matplotlib") is None:
        parser.error("--plot needs matplotlib, an optional dependency: pip install 'keras-llm[plot]'")


def write_history_plot(history, stem, perplexity=True):
    """Draws `history` (`keras_llm.inspect.plot_history`) into STEM.history.png, atomically.

    Returns the path, or None (with a message) when no epoch ran: a rerun
    of a finished run resumes at its last step and trains no further.
    """
    if not getattr(history, "history", None):
        print("--plot: no epoch ran in this run (it resumed at its last step): no curves to draw")
        return None
    figure = keras_llm.inspect.plot_history(history, perplexity=perplexity)
    path = stem + ".history.png"
    with atomic_output(path) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    print(f"training curves: {path}")
    return path


def load_trained(path, parser):
    """`(model, tokenizer)` of a .keras file: the tokenizer it carries, or an earlier
    release's `NAME.tokenizer.json` beside it (with a message to save it again)."""
    if not os.path.isfile(path):
        parser.error(f"--model: no such file {path!r}")
    try:
        # Generation and export need no optimizer: not compiling skips its state.
        model = keras.saving.load_model(path, compile=False)
    except Exception as error:  # Keras reports a damaged zip as "File not found"
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        parser.error(
            f"--model {path!r} is not a loadable .keras model (truncated or damaged? a "
            f".keras file is a zip archive): {reason}"
        )
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is not None:
        return model, tokenizer
    sidecar = os.path.splitext(path)[0] + ".tokenizer.json"
    if not os.path.isfile(sidecar):
        parser.error(
            f"--model {path!r} carries no tokenizer, and {sidecar!r} (where earlier releases "
            "saved it) does not exist; attach one and save it again: model.tokenizer = "
            "tokenizer; model.save(path)"
        )
    try:
        with open(sidecar, encoding="utf-8") as f:
            tokenizer = keras.saving.deserialize_keras_object(json.load(f))
    except (ValueError, TypeError, KeyError) as error:  # JSONDecodeError is a ValueError
        parser.error(
            f"--model {path!r}: its tokenizer {sidecar!r} is not a keras_llm tokenizer "
            f"config as `keras-llm train` writes it ({type(error).__name__}: {error})"
        )
    try:
        model.tokenizer = tokenizer  # the one check of a tokenizer against a model
    except (TypeError, ValueError) as error:
        parser.error(f"--model {path!r}: its tokenizer {sidecar!r} does not fit it: {error}")
    logger.warning(
        "Deprecated: %s carries no tokenizer; read from %s, as earlier releases saved it. "
        "Save the model again so that it carries its tokenizer (the sidecar file is read "
        "for one more release): in Python, model = keras.saving.load_model(%r); "
        "model.tokenizer = tokenizer; model.save(%r)", path, sidecar, path, path,
    )
    return model, tokenizer


def latest_version(path):
    """`path` if it holds a SavedModel, else its largest integer subdirectory."""
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    versions = [int(n) for n in os.listdir(path) if n.isdigit()] if os.path.isdir(path) else []
    if not versions:
        return None
    return os.path.join(path, str(max(versions)))


def generate_from_saved_model(path, prompts, seeds, **settings):
    """Completions of `prompts` from an exported GPT's `generate` signature (TensorFlow only).

    `seeds` has one seed per prompt; the other settings apply to every prompt.
    """
    signatures = tf.saved_model.load(path).signatures
    if "generate" not in signatures:
        raise ValueError(
            f"{path} is not an export of a decoding model (a GPT, Llama or encoder-decoder: it "
            f"has no `generate` signature; it has "
            f"{', '.join(sorted(signatures))})"
        )
    generate = signatures["generate"]
    n = len(prompts)
    outputs = generate(
        text=tf.constant(prompts, tf.string, shape=[n]),
        max_new_tokens=tf.fill([n], settings["max_new_tokens"]),
        temperature=tf.fill([n], float(settings["temperature"])),
        top_k=tf.fill([n], settings["top_k"]),
        top_p=tf.fill([n], float(settings["top_p"])),
        seed=tf.constant(seeds, tf.int32, shape=[n]),
    )
    return [t.decode("utf-8") for t in outputs["generated_text"].numpy()]


def fill_from_saved_model(path, text):
    """[(token, probability), ...] for each [MASK] of `text`, from an exported masked LM."""
    outputs = tf.saved_model.load(path).signatures["serving_default"](text=tf.constant([text]))
    fills = []
    for position, tokens, probabilities in zip(
        outputs["mask_positions"].numpy()[0], outputs["top_tokens"].numpy()[0],
        outputs["top_probabilities"].numpy()[0],
    ):
        if position >= 0:
            fills.append([(t.decode("utf-8"), float(p)) for t, p in zip(tokens, probabilities)])
    return fills


def is_seq2seq_export(path):
    """Whether an export is a seq2seq model's (its `logits` take encoder inputs)."""
    logits = tf.saved_model.load(path).signatures.get("logits")
    return logits is not None and "encoder_token_ids" in logits.structured_input_signature[1]
