"""`graph_function`: `tf.function` for keras_llm's graph code, without autograph.

The decoding loops, the exports' signatures and the core-ops tokenizers are
written as graph code (`tf.while_loop`, `tf.cond`, `tf.where`; no Python
control flow on tensors), so autograph has nothing to convert in them. It
still parsed and rewrote the source of every function they call on each
trace, model layers included: 45% of a GPT export's time
(`benchmarks/export_time.py`). Without it, a Python `if` or loop on a tensor
raises at trace time ("using a tf.Tensor as a Python bool"), so a function
that needed the conversion fails loudly; none silently changes.
"""

import functools

import tensorflow as tf

graph_function = functools.partial(tf.function, autograph=False)
