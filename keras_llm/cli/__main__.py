"""`python -m keras_llm.cli`: the `keras-llm` command (the script is quieter: see `keras_llm_cli`)."""

import sys

from keras_llm_cli import main

if __name__ == "__main__":  # not on import (tests walk every module)
    sys.exit(main())
