"""Choosing and creating the `tf.distribute` strategy a run trains under."""

import json
import logging
import os

import tensorflow as tf

logger = logging.getLogger("keras_llm")

STRATEGY_NAMES = ("auto", "default", "mirrored", "multi_worker", "tpu")

# Environment variables that say a TPU is attached: Colab (COLAB_TPU_ADDR),
# Cloud TPU VMs and GKE (TPU_NAME, TPU_WORKER_HOSTNAMES, TPU_ACCELERATOR_TYPE).
_TPU_VARIABLES = ("COLAB_TPU_ADDR", "TPU_NAME", "TPU_WORKER_HOSTNAMES", "TPU_ACCELERATOR_TYPE")


def choose_strategy(environ=None, num_gpus=None):
    """What `get_strategy("auto")` picks here, and why: `(name, reason)`.

    In order: a TPU when the environment says one is attached; multi-worker
    mirrored when `TF_CONFIG` lists two or more tasks that train (chief and
    workers); mirrored for two or more GPUs; the default strategy otherwise.
    Looking costs nothing: no TPU cluster resolver or server is started.

    Args:
        environ: The environment variables (defaults to `os.environ`).
        num_gpus: The number of visible GPUs (defaults to TensorFlow's count).

    Returns:
        A pair: a strategy name of `get_strategy` and a sentence saying why.

    Example:

    ```python
    import keras_llm

    name, reason = keras_llm.distribute.choose_strategy(environ={}, num_gpus=0)
    assert name == "default"
    ```
    """
    environ = os.environ if environ is None else environ
    for variable in _TPU_VARIABLES:
        if environ.get(variable):
            return "tpu", f"{variable} is set, so a TPU is attached"
    if environ.get("TF_CONFIG"):
        cluster = json.loads(environ["TF_CONFIG"]).get("cluster", {})
        tasks = len(cluster.get("chief", [])) + len(cluster.get("worker", []))
        if tasks >= 2:
            return "multi_worker", f"TF_CONFIG lists {tasks} training tasks"
    if num_gpus is None:
        num_gpus = len(tf.config.list_physical_devices("GPU"))
    if num_gpus >= 2:
        return "mirrored", f"{num_gpus} GPUs are visible"
    return "default", f"one device ({num_gpus} GPU(s)), no TPU and no multi-worker TF_CONFIG"


def get_strategy(name="auto"):
    """Returns a `tf.distribute.Strategy` by name, logging what was chosen and why.

    - `"auto"`: as `choose_strategy` decides.
    - `"default"`: TensorFlow's default strategy (one device, no replication).
    - `"mirrored"`: `MirroredStrategy` over all visible GPUs (or the CPU).
    - `"multi_worker"`: `MultiWorkerMirroredStrategy`, configured by `TF_CONFIG`,
      with the fixes of `keras_llm/distribute/keras_fixes.py` installed (without
      them Keras 3's `fit` fails on two or more workers).
    - `"tpu"`: connects to the TPU cluster that `TPUClusterResolver` finds
      (Colab, Cloud TPU VM) and returns a `TPUStrategy`.

    Build and compile models under `strategy.scope()`; batch datasets by
    the global batch size and `model.fit` distributes them.

    Example:

    ```python
    import keras_llm

    strategy = keras_llm.distribute.get_strategy("default")
    with strategy.scope():
        model = keras_llm.build_gpt("gpt_nano", num_layers=1)
    assert strategy.num_replicas_in_sync == 1
    ```
    """
    if name not in STRATEGY_NAMES:
        raise ValueError(f"Unknown strategy. Received: name={name!r}; expected one of {STRATEGY_NAMES}.")
    reason = "asked for by name"
    if name == "auto":
        name, reason = choose_strategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        strategy = tf.distribute.TPUStrategy(resolver)
    elif name == "multi_worker":
        from keras_llm.distribute import keras_fixes

        keras_fixes.install()  # Keras 3's fit fails on several workers without them
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif name == "mirrored":
        strategy = tf.distribute.MirroredStrategy()
    else:
        strategy = tf.distribute.get_strategy()
    logger.info(
        "strategy: %s (%d replica(s)): %s", name, strategy.num_replicas_in_sync, reason
    )
    return strategy


def is_chief(strategy=None):
    """Whether this process writes checkpoints, logs and exports.

    True in every single-process run; in a multi-worker run, True on the
    chief only (worker 0 when `TF_CONFIG` names no chief).

    Example:

    ```python
    import keras_llm

    assert keras_llm.distribute.is_chief()  # one process: it is the chief
    ```
    """
    strategy = strategy or tf.distribute.get_strategy()
    return bool(getattr(strategy.extended, "should_checkpoint", True))
