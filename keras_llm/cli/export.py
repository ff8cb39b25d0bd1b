"""`keras-llm export`: a trained `.keras` model as a SavedModel that TF Serving serves from raw text."""

import os

import keras_llm
from keras_llm.cli._files import load_trained


def run(args, parser):
    """Exports `--model` (with the tokenizer it carries) into a new version of `--output`."""
    model, tokenizer = load_trained(args.model, parser)
    output = args.output or os.path.join(
        "saved_models", os.path.splitext(os.path.basename(args.model))[0]
    )
    names = args.label_names.split(",") if args.label_names else None
    try:
        # The tokenizer is passed explicitly until keras_llm.export defaults to model.tokenizer.
        version = keras_llm.export(
            model, output, tokenizer, version=args.version, overwrite=args.overwrite,
            label_names=names, max_new_tokens=args.max_new_tokens, top_k=args.top_k,
            jit_compile=args.jit_compile,
        )
    except (ValueError, OSError) as error:  # FileExistsError among them
        parser.error(f"exporting {args.model!r} to --output {output!r}: {error}")
    print(f"exported: {version}")
    return 0
