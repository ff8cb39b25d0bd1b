"""`keras-llm quantize`: a trained `.keras` model quantized (int8, int4, GPTQ, AWQ), saved and exported."""

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
    calibration = _calibration(args, parser)
    model, _ = load_trained(args.model, parser)
    try:
        if calibration is None:
            keras_llm.quantize(model, args.mode, weights_only=args.weights_only)
        else:
            keras_llm.quantize(model, args.mode, calibration=calibration,
                               num_samples=args.num_samples)
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


def _calibration(args, parser):
    """`--calibration`'s text (one document) for --mode gptq or awq, else None; checked first."""
    calibrated = args.mode in keras_llm.compression.CALIBRATED_MODES
    if args.calibration is None:
        if calibrated:
            parser.error(f"--mode {args.mode} needs --calibration FILE (a text to calibrate on)")
        return None
    if not calibrated:
        parser.error(f"--calibration is an option of --mode gptq and awq. Received: --mode {args.mode}")
    try:
        with open(args.calibration, encoding="utf-8") as file:
            return [file.read()]
    except FileNotFoundError:
        parser.error(f"--calibration {args.calibration!r}: no such file")
    except (OSError, UnicodeDecodeError) as error:
        parser.error(f"--calibration {args.calibration!r}: {error}")
