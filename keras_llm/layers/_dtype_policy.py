"""The dtype policy a layer with sublayers writes in its config: its own, and its quantized parts'.

A keras_llm layer that holds other layers (`TransformerBlock`,
`LlamaBlock`, `GroupedQueryAttention`, ...) creates them itself with
`dtype=self.dtype_policy`, so their configs are not saved: only the outer
layer's is. Once a sublayer is quantized (`keras_llm.quantize`,
`model.quantize`), its policy (`"int8_from_float32"`, ...) says which
variables it has (int8 kernel and scale instead of a float32 kernel), and
a config that forgot it would rebuild a float layer that cannot take the
saved int8 variables. Keras's answer, which keras-hub's backbones use, is a
`keras.dtype_policies.DTypePolicyMap`: the outer layer's config holds the
map from each quantized sublayer's path to its policy, the rebuilt layer
passes the map down as every sublayer's `dtype`, and each sublayer looks
its own path up (the layer's policy where it is not in the map).
"""

import keras


def resolved_policy(layer):
    """The `DTypePolicy` `layer` computes with: its entry in a `DTypePolicyMap`, or its own."""
    policy = layer.dtype_policy
    if isinstance(policy, keras.dtype_policies.DTypePolicyMap) and layer.path:
        return policy[layer.path]
    return policy


def dtype_policy_config(layer, policy=None):
    """`layer`'s dtype policy for its config, a `DTypePolicyMap` where sublayers are quantized.

    Args:
        layer: A layer (or a model) whose sublayers take `dtype=` from it.
        policy: The policy its sublayers are given, if not `layer.dtype_policy`
            (a functional model passes its layers' policy, not its own).

    Returns:
        The serialized policy: `policy` itself when no sublayer is quantized
        (the config of a float layer is unchanged), else a `DTypePolicyMap`
        whose default is `policy` and whose entries are the quantized
        sublayers' paths and policies.

    Example:

    ```python
    import numpy as np
    import keras
    import keras_llm
    from keras_llm.layers._dtype_policy import dtype_policy_config

    layer = keras_llm.layers.SwiGLUFeedForward(intermediate_dim=8)
    layer(np.zeros((1, 2, 4), "float32"))
    assert dtype_policy_config(layer) == keras.dtype_policies.serialize(layer.dtype_policy)
    layer._gate_dense.quantize("int8")
    config = dtype_policy_config(layer)
    assert config["class_name"] == "DTypePolicyMap"
    ```
    """
    policy = layer.dtype_policy if policy is None else policy
    if isinstance(policy, keras.dtype_policies.DTypePolicyMap):
        policy = policy.default_policy
    quantized = {
        sublayer.path: resolved_policy(sublayer)
        for sublayer in layer._flatten_layers(include_self=False)
        if sublayer.quantization_mode is not None
    }
    if not quantized:
        return keras.dtype_policies.serialize(policy)
    return keras.dtype_policies.serialize(
        keras.dtype_policies.DTypePolicyMap(default_policy=policy, policy_map=quantized)
    )
