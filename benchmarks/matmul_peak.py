"""The matmul throughput a benchmark's MFU is measured against."""

import time

import tensorflow as tf


def measure_matmul_flops(dtype="float32", n=2048, repeats=20):
    """Matmul FLOP/s of the default device in `dtype`, as TensorFlow reaches it.

    A chain of `repeats` n x n products in one `tf.function`, best of three
    timed runs after a warm-up.
    """
    a = tf.cast(tf.random.normal((n, n)), dtype)
    b = tf.cast(tf.random.normal((n, n)), dtype)

    @tf.function
    def chain(a, b):
        for _ in range(repeats):
            a = tf.matmul(a, b) * 1e-3  # keeps the values in range
        return a

    chain(a, b).numpy()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        chain(a, b).numpy()  # .numpy() waits for the device
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 * repeats / best
