"""`keras-llm quantize`: a trained `.keras` model quantized (int8 or int4), saved and exported."""

import os

import keras_llm
from keras_llm._atomic import atomic_output
from keras_llm.cli._files import load_trained


def run(args, parser):
    """Quantizes `--model` with `--mode`, saves it to `--output` and, with `--export`, exports it.

    Every check is made before anything is written: a missing file, a file
    that is not a `.keras` model, an unknown mode or a model already
    quantized is a one-line error (exit status 2) and writes nothing. The
    `.keras` file is written whole or not at all (`keras_llm._atomic`).
    """
    if not args.model.endswith(".keras"):
        parser.error(f"--model must be a .keras file. Received: --model {args.model!r}")
    output = args.output or f"{os.path.splitext(args.model)[0]}.{args.mode}.keras"
    if not output.endswith(".keras"):
        parser.error(f"--output must end in .keras. Received: --output {output!r}")
    if args.weights_only and args.mode != "int8":
        parser.error(f"--weights-only is an option of --mode int8. Received: --mode {args.mode}")
    if os.path.abspath(output) == os.path.abspath(args.model):
        parser.error(f"--output must not be --model itself. Received: --output {output!r}")
    model, _ = load_trained(args.model, parser)
    try:
        keras_llm.quantize(model, args.mode, weights_only=args.weights_only)
    except ValueError as error:
        parser.error(f"--model {args.model!r}: {error}")
    with atomic_output(output) as temporary:
        model.save(temporary)
    print(f"saved: {output}")
    if args.export:
        try:
            version = keras_llm.export(model, args.export)
        except (ValueError, OSError) as error:
            parser.error(f"exporting {output!r} to --export {args.export!r}: {error}")
        print(f"exported: {version}")
    return 0
