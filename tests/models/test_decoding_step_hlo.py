"""What XLA makes of one cached decoding step on a CPU, read from its optimized HLO.

Two layouts made a batch-1 step several times slower than it needs to be
(`benchmarks/seq2seq_generation.py`), with the same numbers out, so no
numerical test sees them:

- a projection whose kernel is reshaped before its matmul (a head-split
  `[D, N, H]` kernel): XLA on a CPU fuses the reshape into the
  matrix-vector product and emits it as an element-by-element loop
  (`kind=kLoop`) instead of its matrix-vector kernel;
- logits from `hidden @ transpose(table)`: the `[D, V]` transpose of the
  tied table was copied at every step.
"""

import re

import keras
import pytest
import tensorflow as tf

import keras_llm

SIZES = dict(vocabulary_size=40, num_layers=2, num_heads=2, hidden_dim=16,
             intermediate_dim=32, max_sequence_length=16, dropout=0.0)


def optimized_step_hlo(model, context=None):
    """The optimized HLO of `call_with_cache` on one token of a batch of one."""
    cache = model.empty_cache(1, 8)
    token = tf.constant([[3]], tf.int32)

    @tf.function(jit_compile=True)
    def step(token, cache, context):
        return model.call_with_cache(token, cache, 2, context)

    return step.experimental_get_compiler_ir(token, cache, context)(stage="optimized_hlo")


def loop_emitted_dots(hlo):
    """The `kind=kLoop` fusions whose fused computation holds a `dot`."""
    with_dot = set()
    for block in re.split(r"\n(?=\S)", hlo):  # one top-level computation per block
        name = re.match(r"(?:ENTRY )?%?([\w.\-]+)", block)
        if name and re.search(r"\bdot\(", block):
            with_dot.add(name.group(1))
    return [
        line.strip() for line in hlo.splitlines()
        if "kind=kLoop" in line
        and (m := re.search(r"calls=%([\w.\-]+)", line)) and m.group(1) in with_dot
    ]


def models():
    keras.utils.set_random_seed(0)
    gpt = keras_llm.build_gpt(**SIZES)
    seq2seq = keras_llm.build_seq2seq(**SIZES)
    source = tf.constant([[5, 6, 7, 8]], tf.int32)
    return {"gpt": (gpt, None), "seq2seq": (seq2seq, seq2seq.encode(source, tf.ones_like(source)))}


@pytest.fixture(scope="module")
def step_hlos():
    return {name: optimized_step_hlo(model, context) for name, (model, context) in models().items()}


@pytest.mark.parametrize("name", ["gpt", "seq2seq"])
def test_every_matmul_of_a_step_is_a_matrix_vector_kernel(step_hlos, name):
    hlo = step_hlos[name]
    assert re.search(r"\bdot\(", hlo)  # the check below looks at something
    assert loop_emitted_dots(hlo) == []


@pytest.mark.parametrize("name", ["gpt", "seq2seq"])
def test_the_tied_table_is_not_transposed_at_each_step(step_hlos, name):
    d, v = SIZES["hidden_dim"], SIZES["vocabulary_size"]
    hlo = step_hlos[name]
    assert f"f32[{v},{d}]" in hlo  # the table is there...
    assert f"f32[{d},{v}]" not in hlo  # ...and never in its transposed shape


def test_the_check_finds_a_loop_emitted_matmul():
    # The old projection (a head-split kernel reshaped before the matmul)
    # is flagged: the check can fail.
    kernel = tf.Variable(tf.random.normal([16, 2, 8]))

    @tf.function(jit_compile=True)
    def project(x):
        return tf.matmul(x, tf.reshape(kernel, [16, 16]))

    hlo = project.experimental_get_compiler_ir(tf.ones([1, 16]))(stage="optimized_hlo")
    assert loop_emitted_dots(hlo) != []
