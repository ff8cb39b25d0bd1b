"""The `keras-llm` command: its flags, its parser and its start-up.

This module sits beside the `keras_llm` package, not inside it, so that
`keras-llm --help` and flag errors answer in a fraction of a second: importing
anything inside `keras_llm` imports the whole package (which must register its
layers with Keras on `import keras_llm`, so that `keras.saving.load_model`
needs no `custom_objects`), and with it TensorFlow (4-7 s). TensorFlow is
imported only when a command runs, and its C++ start-up lines are kept off the
terminal unless `--verbose` (they are printed if the import fails). The
commands themselves are in `keras_llm/cli/`, one module each.

Every flag is declared once, here, with its default and help text.
"""

import argparse
import logging
import os
import sys
import tempfile
import warnings

# The preset names, for --help and --preset's choices without importing
# TensorFlow; tests/test_cli.py checks them against keras_llm's presets.
GPT_PRESET_NAMES = ("gpt_nano", "gpt2_small", "gpt2_medium", "gpt2_large", "gpt2_xl")
BERT_PRESET_NAMES = ("bert_tiny", "bert_mini", "bert_small", "bert_medium", "bert_base", "bert_large")
SEQ2SEQ_PRESET_NAMES = ("seq2seq_tiny", "transformer_base", "transformer_big")
# `finetune --task`: the aliases of tasks in keras_llm.models.registry (checked there too).
FINETUNE_TASK_NAMES = ("classify", "tag", "qa")

COMMON_FLAGS = {
    "--verbose": dict(
        action="store_true",
        help="Show TensorFlow's start-up lines, its C++ log (errors included: rerun a failing "
        "command with --verbose to see them) and the deprecation warnings of TensorFlow and "
        "Keras, all hidden by default.",
    ),
}

TRAIN_FLAGS = {
    "--preset": dict(
        default="gpt_nano", choices=GPT_PRESET_NAMES + BERT_PRESET_NAMES + SEQ2SEQ_PRESET_NAMES,
        metavar="PRESET",
        help="A GPT preset (causal-LM training: " + ", ".join(GPT_PRESET_NAMES) + "), a BERT "
        "preset (masked-LM + next-sentence pre-training: " + ", ".join(BERT_PRESET_NAMES) + ") "
        "or an encoder-decoder preset (sequence to sequence: " + ", ".join(SEQ2SEQ_PRESET_NAMES)
        + "; without --data it learns to summarize standard-library functions into the first "
        "line of their docstrings and reports BLEU and ROUGE-L on held-out ones).",
    ),
    "--data": dict(
        default=None,
        help="A .txt/.csv/.tsv/.jsonl file, a glob of them, or tfds:NAME. Default: the "
        "embedded corpus (the Python standard library's docstrings).",
    ),
    "--text-field": dict(default=None, help="The text column/key/feature of --data."),
    "--source-field": dict(
        default="source",
        help="Encoder-decoder presets: the source column/key/feature of --data (e.g. de, or "
        "article for tfds:cnn_dailymail).",
    ),
    "--target-field": dict(
        default="target",
        help="Encoder-decoder presets: the target column/key/feature of --data (e.g. en, or "
        "highlights for tfds:cnn_dailymail).",
    ),
    "--target-length": dict(
        type=int, default=32,
        help="Encoder-decoder presets: tokens per target (--sequence-length is the source's).",
    ),
    "--eval-pairs": dict(
        type=int, default=500,
        help="Encoder-decoder presets: the most held-out pairs scored with BLEU and ROUGE-L "
        "(greedy) before and after training.",
    ),
    "--split": dict(default="train", help="The TFDS split of tfds:NAME, slicing allowed."),
    "--data-dir": dict(default=None, help="The TFDS data directory (offline: a prepared one)."),
    "--download": dict(
        default=True, action=argparse.BooleanOptionalAction,
        help="Whether tfds:NAME may be downloaded and prepared into --data-dir; with "
        "--no-download only an already prepared data set is read.",
    ),
    "--tokenizer": dict(
        default=None,
        help="byte (GPT and encoder-decoder), a BERT vocab.txt, a GPT-2 vocab.json (merges.txt "
        "beside it), or train:SIZE to learn one from --data (WordPiece for BERT, byte-level BPE "
        "for the others). Default: byte for GPT, train:8192 for BERT, train:4096 (one "
        "vocabulary for sources and targets) for encoder-decoders.",
    ),
    "--steps": dict(type=int, default=800, help="Training steps (batches)."),
    "--batch-size": dict(type=int, default=32, help="Sequences per batch (the global batch)."),
    "--sequence-length": dict(type=int, default=128, help="Tokens per sequence."),
    "--learning-rate": dict(
        type=float, default=None,
        help="Peak learning rate. Default: 2e-3 for gpt_nano, 1e-3 for bert_tiny to "
        "bert_small, else keras_llm.training.PEAK_LEARNING_RATE of the objective.",
    ),
    "--output": dict(
        default=None,
        help="Where to save the trained model (.keras; it carries its tokenizer). "
        "Default: PRESET.keras.",
    ),
    "--seed": dict(type=int, default=0, help="Seed of initialisation, data order and sampling."),
    "--strategy": dict(
        default="auto", choices=("auto", "default", "mirrored", "multi_worker", "tpu"),
        help="The tf.distribute strategy (keras_llm.distribute.get_strategy); auto picks a TPU, "
        "several workers (TF_CONFIG), several GPUs or one device, and says why. "
        "--batch-size is the global batch, split across replicas.",
    ),
    "--precision": dict(
        default="float32", choices=("float32", "mixed_bfloat16", "mixed_float16"),
        help="Weights stay float32; mixed_* run matmuls in bfloat16/float16 (float16 with loss scaling).",
    ),
    "--jit-compile": dict(
        default="auto", nargs="?", const="on", choices=("auto", "on", "off"),
        help="XLA compilation of the train step: auto (GPT and BERT pre-training, whose "
        "batches have one shape: on for one device, CPU or GPU; seq2seq, whose batches are "
        "bucketed by length: on for one GPU only; off under multi-replica strategies, where "
        "Keras 3 cannot compile it), on (also plain --jit-compile) or off.",
    ),
    "--backup-dir": dict(
        default=None,
        help="Where training state is backed up, so that rerunning the same command after a "
        "kill resumes where it stopped; removed once the model is saved. "
        "Default: OUTPUT without .keras, plus _backup.",
    ),
    "--backup-every": dict(type=int, default=100, help="Steps between backups."),
    "--logdir": dict(default=None, help="Write TensorBoard logs here (the chief only)."),
    "--plot": dict(
        action="store_true",
        help="Also write the training curves (loss, perplexity, accuracy, each with its "
        "validation curve, per epoch) as OUTPUT without .keras, plus .history.png, beside the "
        "model (a resumed run draws the epochs it ran). Needs matplotlib: pip install "
        "'keras-llm[plot]'.",
    ),
    "--prompt": dict(
        default="Return the ",
        help="Text of the sample printed after training: a GPT continues it; a BERT fills its "
        "[MASK]s (one is appended if it has none).",
    ),
    "--sample-length": dict(type=int, default=200, help="Tokens of the GPT sample."),
    "--export": dict(
        default=None,
        help="Where the trained model is exported for TF Serving (a new version directory "
        "inside; the sample comes from it). Default: saved_models/NAME, NAME from --output.",
    ),
}

GENERATE_FLAGS = {
    "--model": dict(
        required=True,
        help="A .keras file (it carries its tokenizer) or an exported SavedModel: a "
        "version directory or its base directory (the latest version is used).",
    ),
    "--prompt": dict(action="append", default=None, help="A prompt; repeat for a batch."),
    "--prompt-file": dict(
        default=None,
        help="A UTF-8 file of prompts, one per line (empty lines skipped); - reads standard "
        "input. Added after the --prompt ones.",
    ),
    "--max-new-tokens": dict(type=int, default=64, help="Most tokens added to each prompt."),
    "--temperature": dict(type=float, default=0.0, help="0: greedy; else sample at this temperature."),
    "--top-k": dict(type=int, default=0, help="Sample among the k most likely tokens (0: all)."),
    "--top-p": dict(type=float, default=1.0, help="Sample from the top-p probability mass (1: all)."),
    "--num-beams": dict(
        type=int, default=1,
        help="Beam search with this many beams (deterministic; .keras models only: exports "
        "serve sampling and greedy decoding).",
    ),
    "--num-samples": dict(
        type=int, default=1,
        help="Samples per prompt (needs --temperature > 0), each with its own seed.",
    ),
    "--stop": dict(
        action="append", default=None, metavar="STRING",
        help="Cut each completion before the first occurrence of this string; repeat for "
        "several. (Generation itself stops at the model's end token.)",
    ),
    "--seed": dict(
        type=int, default=0,
        help="Seed of the sampling. Each prompt and sample gets its own seed derived from it, "
        "so the same prompt and --seed give the same text alone or in any batch (a prompt "
        "given twice gives the same text twice: --num-samples gives different ones).",
    ),
}

EXPORT_FLAGS = {
    "--model": dict(required=True, help="A .keras file from keras-llm train or finetune (it carries its tokenizer)."),
    "--output": dict(default=None, help="The base directory. Default: saved_models/NAME."),
    "--version": dict(type=int, default=None, help="The version number. Default: the next free one."),
    "--overwrite": dict(action="store_true", help="Replace an existing --version."),
    "--label-names": dict(default=None, help="A classifier's class names, comma-separated."),
    "--max-new-tokens": dict(type=int, default=None, help="A GPT's serving_default max_new_tokens. Default: 64."),
    "--top-k": dict(
        type=int, default=None,
        help="A masked LM's fills per [MASK] (default 5), or a GPT's serving_default top-k "
        "(default 0: off).",
    ),
    "--jit-compile": dict(
        action="store_true",
        help="A GPT's or seq2seq model's generation loop XLA-compiled per shape bucket (about 3x "
        "faster on a CPU; TF Serving then needs --xla_cpu_compilation_enabled=true).",
    ),
}

QUANTIZE_FLAGS = {
    "--model": dict(required=True, help="A .keras model file (it carries its tokenizer), not yet quantized."),
    "--mode": dict(
        default="int8", choices=("int8", "int4", "gptq", "awq"),
        help="int8: int8 weights (a scale per output channel) and activations (a scale per "
        "token); int4: 4-bit weights in blocks of 128, float activations; gptq, awq: 4-bit "
        "weights of a causal LM's blocks, rounded as calibrated on --calibration "
        "(keras_llm.quantize).",
    ),
    "--calibration": dict(
        default=None, metavar="FILE",
        help="gptq and awq: a UTF-8 text file, read as one text, that the calibration windows "
        "are cut from.",
    ),
    "--num-samples": dict(
        type=int, default=128,
        help="gptq and awq: how many calibration windows (of 512 tokens, or the model's "
        "context if shorter).",
    ),
    "--weights-only": dict(
        action="store_true",
        help="int8 only: quantize the weights, keep the activations float (closer outputs, the "
        "same memory; keras_llm.quantize(..., weights_only=True)).",
    ),
    "--output": dict(default=None, help="Where the quantized .keras model is saved. Default: MODEL with .MODE.keras."),
    "--export": dict(default=None, metavar="DIR", help="Also export it for TF Serving into a new version of DIR."),
}

# `finetune` and `distill`: where a tfds:NAME --train and --eval come from.
TRAIN_EVAL_TFDS_FLAGS = {
    "--split": dict(default="train", help="The TFDS split of a tfds:NAME --train."),
    "--eval-split": dict(default="validation", help="The TFDS split of a tfds:NAME --eval."),
    "--data-dir": dict(default=None, help="The TFDS data directory (offline: a prepared one)."),
    "--download": dict(
        default=True, action=argparse.BooleanOptionalAction,
        help="Whether tfds:NAME may be downloaded and prepared into --data-dir.",
    ),
}

FINETUNE_FLAGS = {
    "--checkpoint": dict(
        required=True,
        help="A Hugging Face BERT-family model directory: config.json, model.safetensors and "
        "vocab.txt or tokenizer.json (keras_llm.from_pretrained).",
    ),
    "--task": dict(
        required=True, choices=FINETUNE_TASK_NAMES,
        help="classify: one label per text; tag: one tag per word (NER); qa: the answer to a "
        "question as a span of its context.",
    ),
    "--train": dict(
        required=True,
        help="Training examples: a .tsv/.csv/.jsonl file (or a glob) with named fields, or "
        "tfds:NAME. classify: a text and a label field; tag: lists of words and of tags (.jsonl "
        "or TFDS, e.g. tfds:conll2003); qa: question, context and answers ({text: [...], "
        "answer_start: [...]}, SQuAD's format) or answer_text and answer_start.",
    ),
    "--eval": dict(
        default=None,
        help="Evaluation examples, as --train; scored after training (classify: accuracy; "
        "tag: entity-level precision, recall and F1; qa: exact match and F1).",
    ),
    "--text-field": dict(
        default=None,
        help="The text field. Default: classify: the first of text, sentence, content; tag: tokens.",
    ),
    "--label-field": dict(default=None, help="The label field. Default: classify: label; tag: tags."),
    "--label-names": dict(
        default=None,
        help="Class or tag names, comma-separated, in id order. Default: the checkpoint's "
        "id2label if it has the head, else the sorted names found in --train (tag: O first).",
    ),
    **TRAIN_EVAL_TFDS_FLAGS,
    "--epochs": dict(type=int, default=2, help="Passes over --train."),
    "--max-steps": dict(type=int, default=None, help="Stop after this many steps (batches) in all."),
    "--batch-size": dict(type=int, default=32, help="Examples (qa: windows) per batch."),
    "--sequence-length": dict(
        type=int, default=None,
        help="The longest input in tokens, specials included. Default: 128 (qa: 384), or the "
        "checkpoint's max_position_embeddings if smaller.",
    ),
    "--doc-stride": dict(
        type=int, default=128,
        help="qa: tokens that consecutive windows of a long context share.",
    ),
    "--max-question-length": dict(type=int, default=64, help="qa: questions keep this many tokens."),
    "--learning-rate": dict(type=float, default=5e-5, help="Peak learning rate (10%% warm-up, then linear decay)."),
    "--lora": dict(
        type=int, default=None, metavar="RANK",
        help="Train LoRA adapters of this rank on every attention's query and value projections "
        "(keras_llm.training.enable_lora), and the fresh head whole, instead of every weight; the "
        "adapters are also saved alone (OUTPUT without .keras + .lora.h5) and the export serves "
        "them merged into the kernels. LoRA usually wants a larger --learning-rate (1e-4 to 5e-4).",
    ),
    "--lora-targets": dict(
        default="query,value", metavar="NAMES",
        help="With --lora: the projections that get adapters, comma-separated layer names (or "
        "their ends), e.g. query,key,value,attention_output,intermediate_dense,output_dense for "
        "every projection of every block.",
    ),
    "--output": dict(
        default=None,
        help="Where the fine-tuned model is saved (.keras; it carries its tokenizer). "
        "Default: CHECKPOINT-TASK.keras, CHECKPOINT the directory's name.",
    ),
    "--export": dict(
        default=None,
        help="Where it is exported for TF Serving (a new version directory inside). "
        "Default: saved_models/NAME, NAME from --output.",
    ),
    "--seed": dict(type=int, default=0, help="Seed of the fresh head, dropout and data order."),
    "--backup-dir": dict(
        default=None,
        help="Where training state is backed up, so that rerunning the same command after a "
        "kill resumes. Default: OUTPUT without .keras, plus _backup.",
    ),
    "--backup-every": dict(type=int, default=200, help="Steps between backups."),
}

DISTILL_FLAGS = {
    "--teacher": dict(
        required=True,
        help="The teacher classifier: a .keras file (as keras-llm finetune --task classify "
        "saves it; it carries its tokenizer) or a Hugging Face directory with a sequence-"
        "classification head.",
    ),
    "--student-preset": dict(
        default="bert_mini", choices=BERT_PRESET_NAMES, metavar="PRESET",
        help="The student: a fresh BERT preset classifier (" + ", ".join(BERT_PRESET_NAMES)
        + ") with the teacher's tokenizer and classes.",
    ),
    "--train": dict(
        required=True,
        help="Training examples: a .tsv/.csv/.jsonl file (or a glob) with a text and a label "
        "field, or tfds:NAME.",
    ),
    "--eval": dict(
        default=None,
        help="Evaluation examples, as --train; the teacher's and the student's accuracy on them "
        "are printed after training.",
    ),
    "--temperature": dict(
        type=float, default=2.0,
        help="T: both models' logits are divided by T before the softmaxes the KL compares "
        "(higher: softer targets); the KL is scaled by T^2 (Hinton et al. 2015).",
    ),
    "--alpha": dict(
        type=float, default=0.5,
        help="The weight of the teacher's term, in [0, 1]: loss = alpha T^2 KL(teacher || "
        "student) + (1 - alpha) cross-entropy(labels); 0 trains on the labels alone (the "
        "baseline), 1 on the teacher alone.",
    ),
    "--text-field": dict(
        default=None, help="The text field. Default: the first of text, sentence, content."
    ),
    "--label-field": dict(default="label", help="The label field."),
    "--label-names": dict(
        default=None,
        help="The teacher's class names, comma-separated, in id order. Default: a Hugging Face "
        "head's id2label, else the sorted string labels of --train (as finetune names them), "
        "else numbered classes.",
    ),
    **TRAIN_EVAL_TFDS_FLAGS,
    "--epochs": dict(type=int, default=3, help="Passes over --train."),
    "--max-steps": dict(type=int, default=None, help="Stop after this many steps (batches) in all."),
    "--batch-size": dict(type=int, default=32, help="Examples per batch."),
    "--sequence-length": dict(
        type=int, default=None,
        help="The longest input in tokens, specials included. Default: 128, or the teacher's "
        "context if smaller.",
    ),
    "--learning-rate": dict(
        type=float, default=None,
        help="The student's peak learning rate (10%% warm-up, then linear decay). Default: 1e-3 "
        "for bert_tiny to bert_small, else 5e-5.",
    ),
    "--output": dict(
        default=None,
        help="Where the student is saved (.keras; it carries its tokenizer). "
        "Default: PRESET-distilled.keras.",
    ),
    "--export": dict(
        default=None,
        help="Where it is exported for TF Serving (a new version directory inside). "
        "Default: saved_models/NAME, NAME from --output.",
    ),
    "--seed": dict(type=int, default=0, help="Seed of the student's initialisation, dropout and data order."),
}

CHAT_FLAGS = {
    "--model": dict(
        required=True,
        help="A chat model: a Hugging Face directory or a GGUF file (keras_llm.from_pretrained) "
        "whose tokenizer carries a chat template, or a .keras file saved from one.",
    ),
    "--system": dict(default=None, help="A system message that starts the conversation."),
    "--chat-template": dict(
        default=None, help="A file holding a Jinja chat template. Default: the tokenizer's."
    ),
    "--max-new-tokens": dict(type=int, default=256, help="The most tokens of one reply."),
    "--temperature": dict(type=float, default=0.0, help="0 for greedy decoding; > 0 samples."),
    "--top-k": dict(type=int, default=0, help="Sample among the k most likely tokens (0: off)."),
    "--top-p": dict(type=float, default=1.0, help="Nucleus sampling threshold (1: off)."),
    "--seed": dict(type=int, default=0, help="Sampling seed."),
}

COMMANDS = {
    "train": (
        TRAIN_FLAGS, "Train a GPT or a BERT; by default gpt_nano on the built-in corpus.",
        " Saves the model and its tokenizer, exports them for TF Serving "
        "(saved_models/NAME/VERSION, --export) and prints a sample from the export: a GPT's "
        "continuation of --prompt, or a BERT's fills of its [MASK]s. Rerunning the same "
        "command after the process was killed resumes from the last backup (--backup-dir) "
        "and ends with the same model.",
    ),
    "generate": (GENERATE_FLAGS, "Continue prompts with a GPT from a .keras file or an export.", ""),
    "finetune": (
        FINETUNE_FLAGS,
        "Fine-tune a pretrained Hugging Face checkpoint to classify texts, tag words or answer "
        "questions.",
        " Trains (resumably, as train does), evaluates on --eval, saves the model and its "
        "tokenizer, exports them for TF Serving (saved_models/NAME/VERSION) and prints what the "
        "export answers for the first --eval example.",
    ),
    "export": (EXPORT_FLAGS, "Export a trained .keras model for TF Serving.", ""),
    "quantize": (
        QUANTIZE_FLAGS, "Quantize a .keras model to int8, int4, GPTQ or AWQ (and export it).",
        " Saves the quantized model to --output (it loads with keras.saving.load_model) and, "
        "with --export, exports it for TF Serving.",
    ),
    "distill": (
        DISTILL_FLAGS,
        "Distill a classifier (a .keras file or a Hugging Face directory) into a small BERT preset.",
        " Trains a fresh --student-preset classifier on the teacher's softened logits and the "
        "labels of --train (keras_llm.training.distill), prints the teacher's and the student's "
        "accuracy on --eval, saves the student and its tokenizer, exports them for TF Serving "
        "(saved_models/NAME/VERSION) and prints what the export answers for the first --eval "
        "example.",
    ),
    "chat": (
        CHAT_FLAGS, "Chat with a chat model (Hugging Face directory, GGUF file or .keras).",
        " Reads the user's turns from standard input, one a line (interactive or piped), and "
        "prints each reply as it is decoded; the conversation is kept until end of input.",
    ),
}


def _with_default(spec):
    """`spec` with its default at the end of the help (argparse's formatter would print None too)."""
    default = spec.get("default")
    if default is None or isinstance(default, bool) or "Default:" in spec["help"]:
        return spec  # nothing to show, or said already (BooleanOptionalAction adds its own)
    shown = repr(default) if isinstance(default, str) and default != default.strip() else default
    return {**spec, "help": f"{spec['help']} Default: {shown}."}


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-llm", description="Build, train and use transformer language models."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (flags, summary, details) in COMMANDS.items():
        sub = commands.add_parser(name, help=summary, description=summary + details)
        for flag, spec in {**flags, **COMMON_FLAGS}.items():
            sub.add_argument(flag, **_with_default(spec))
        sub.set_defaults(command_parser=sub)  # its errors print its own usage
    return parser


def _import_quietly(verbose):
    """Imports keras_llm (and so TensorFlow), keeping TensorFlow's start-up off the terminal.

    TensorFlow's C++ libraries write their start-up lines (oneDNN, CUDA
    drivers, CPU features) to file descriptor 2 before its log level is read,
    twice (two libraries load), so `TF_CPP_MIN_LOG_LEVEL` cannot hide them:
    stderr is redirected to a file during the import and replayed only if the
    import fails.
    """
    if verbose:
        import keras_llm.cli

        return keras_llm.cli
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # also the cuInit error of CPU machines
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            import keras_llm.cli
        except BaseException:
            os.dup2(saved, 2)
            log.seek(0)
            sys.stderr.write(log.read().decode("utf-8", errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    import absl.logging
    import tensorflow as tf

    tf.get_logger().setLevel(logging.ERROR)
    absl.logging.set_verbosity(absl.logging.ERROR)
    # TensorFlow's and Keras's own deprecation notes are for their developers.
    for module in ("tensorflow", "keras", "tf_keras", "tensorflow_text", "keras_hub"):
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=rf"{module}(\.|$)")
    return keras_llm.cli


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    logging.basicConfig(format="%(message)s")
    # What keras_llm says at INFO: the strategy chosen and why, a resumption.
    logging.getLogger("keras_llm").setLevel(logging.INFO)
    commands = _import_quietly(args.verbose)
    return commands.run(args, args.command_parser)


if __name__ == "__main__":
    sys.exit(main())
