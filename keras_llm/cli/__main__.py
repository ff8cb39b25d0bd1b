"""`python -m keras_llm.cli`: the `keras-llm` command (the script is quieter: see `keras_llm_cli`)."""

import sys

from keras_llm_cli import main

sys.exit(main())
