"""Strategies: what `auto` picks, and that replication does not change training."""

import json
import logging
import os
import subprocess
import sys
import textwrap

import pytest

from keras_llm.distribute import choose_strategy, get_strategy

TWO_WORKERS = json.dumps(
    {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 0}}
)


@pytest.mark.parametrize(
    "environ, num_gpus, expected",
    [
        ({}, 0, "default"),
        ({}, 1, "default"),
        ({}, 2, "mirrored"),
        ({"TF_CONFIG": TWO_WORKERS}, 2, "multi_worker"),
        ({"TF_CONFIG": json.dumps({"cluster": {"worker": ["a:1"]}})}, 0, "default"),
        ({"COLAB_TPU_ADDR": "10.0.0.2:8470", "TF_CONFIG": TWO_WORKERS}, 0, "tpu"),
        ({"TPU_NAME": "local"}, 0, "tpu"),
    ],
)
def test_auto_chooses_as_documented(environ, num_gpus, expected):
    name, reason = choose_strategy(environ=environ, num_gpus=num_gpus)
    assert name == expected and reason


def test_get_strategy_logs_its_choice_and_rejects_unknown_names(caplog):
    with caplog.at_level(logging.INFO, logger="keras_llm"):
        strategy = get_strategy("auto")  # this machine: one CPU, no TPU, no TF_CONFIG
    assert strategy.num_replicas_in_sync == 1
    assert "strategy: default (1 replica(s)): one device" in caplog.text
    with pytest.raises(ValueError, match="name='gpu'"):
        get_strategy("gpu")


MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, numpy as np, keras_llm

    def case(padded, clip):
        rng = np.random.default_rng(0)
        ids = rng.integers(0, 50, size=(32, 17)).astype("int32")
        # With padding, the replicas' halves of a batch hold different numbers of real tokens.
        lengths = rng.integers(4, 17, size=32) if padded else np.full(32, 17)
        mask = (np.arange(16)[None, :] < lengths[:, None] - 1).astype("int32")
        x = {"token_ids": ids[:, :-1] * mask, "padding_mask": mask}
        y, w = ids[:, 1:] * mask, mask.astype("float32")

        def train(strategy, clip=clip):
            keras.utils.set_random_seed(0)
            with strategy.scope():
                model = keras_llm.build_gpt(
                    vocabulary_size=50, num_layers=1, num_heads=2, hidden_dim=32,
                    intermediate_dim=64, dropout=0.0, max_sequence_length=16,
                )
                keras_llm.compile_model(
                    model, "causal_lm", learning_rate=1e-2, total_steps=4,
                    global_clipnorm=0.1 if clip else None,  # small enough to act
                )
            ds = tf.data.Dataset.from_tensor_slices((x, y, w)).batch(8)  # global batch 8
            model.fit(ds, epochs=1, verbose=0, shuffle=False)
            return model.get_weights()

        single = train(tf.distribute.get_strategy())
        mirrored = train(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
        unclipped = train(tf.distribute.get_strategy(), clip=False)
        difference = lambda u, v: max(float(np.max(np.abs(a - b))) for a, b in zip(u, v))
        # Second number: how much clipping changed one device's result (it must be active).
        return [difference(single, mirrored), difference(single, unclipped)]

    # Every case in this one process (each process pays TensorFlow's start-up).
    print(json.dumps([case(padded, clip) for padded, clip in json.loads(sys.argv[1])]))
    """
)


CASES = [
    (False, True),
    (True, False),  # the loss divides by the global batch's real-token count
    (True, True),  # clipping sees the summed gradient (keras_llm.training.AdamW)
]


@pytest.fixture(scope="module")
def mirrored_results():
    """`{(padded, clip): (difference, clipping_effect)}`, every case run in one subprocess."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT, json.dumps(CASES)],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(zip(CASES, json.loads(result.stdout.strip().splitlines()[-1])))


@pytest.mark.slow
@pytest.mark.parametrize("padded, clip", CASES, ids=["full-clipped", "padded-unclipped", "padded-clipped"])
def test_mirrored_over_two_cpus_equals_one_device_with_the_same_global_batch(
    padded, clip, mirrored_results
):
    difference, clipping_effect = mirrored_results[(padded, clip)]
    assert difference < 1e-5, difference
    assert (clipping_effect > 1e-4) == clip, clipping_effect
