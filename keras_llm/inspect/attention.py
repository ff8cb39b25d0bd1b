"""Every layer's and head's attention weights of a keras_llm model, over a text's tokens.

The weights come from the model's own forward pass: its functional graph is
run as `model(inputs)` runs it, except that each attention block
(`TransformerBlock`, `LlamaBlock`) is called with
`return_attention_scores=True`, and its probabilities are kept while its
output goes on through the graph. So the maps are the model's own (its
masks, its rotary positions, its pre- or post-norm), with no second copy of
the attention math, and the blocks are found by what they are, not by their
names. The walk is Keras's own (`Functional._run_through_graph`, a private
method, the one `keras.models.clone_model(call_function=...)` runs on):
tests/inspect checks each map against a NumPy reference of its block on the
inputs the model's graph gives it, and a real checkpoint's maps against
transformers' `output_attentions`.
"""

import dataclasses
import warnings

import numpy as np
import tensorflow as tf
from keras import ops

from keras_llm.export.serving import bert_inputs
from keras_llm.generation.prompts import prompt_ids, source_ids
from keras_llm.layers import LlamaBlock, TransformerBlock
from keras_llm.models import registry
from keras_llm.models.task_model import tokenizer_of

# What `attention_weights` returns, per kind of attention.
KINDS = ("self_attention", "decoder_self_attention", "cross_attention")


@dataclasses.dataclass(frozen=True)
class AttentionMaps:
    """A model's attention weights over one text, as `attention_maps` returns them.

    Each map is a softmax over the keys, after the masks: every row sums to
    1, and a causal model's maps are 0 above the diagonal. Head `n` of a
    Llama-family model (grouped-query attention) is query head `n`, which
    reads key/value head `n // (num_heads // num_key_value_heads)`.

    Attributes:
        tokens: The text's tokens as strings, the special tokens the model
            reads included (a BERT's `[CLS]` and `[SEP]`, a seq2seq
            source's end token), as the vocabulary spells them.
        self_attention: float32 `[layers, heads, T, T]` (`T = len(tokens)`):
            query token (row) over key token (column), for every layer and
            head; a BERT's, a GPT's or a Llama's self-attention, a seq2seq
            model's encoder's.
        target_tokens: A seq2seq model's decoder tokens (its start token,
            then the target's), else None.
        decoder_self_attention: A seq2seq model's decoder self-attention,
            `[decoder layers, heads, U, U]` (`U = len(target_tokens)`), else None.
        cross_attention: A seq2seq model's decoder-over-encoder attention,
            `[decoder layers, heads, U, T]`: target token (row) over source
            token (column), else None.

    Example:

    ```python
    import keras_llm

    model = keras_llm.build_seq2seq(
        "seq2seq_tiny", num_layers=1, tokenizer=keras_llm.tokenizers.ByteTokenizer()
    )
    maps = keras_llm.inspect.attention_maps(model, "Hallo", target="Hi")
    assert maps.tokens == ["H", "a", "l", "l", "o", "<|endoftext|>"]  # the source's end
    assert maps.target_tokens == ["<|endoftext|>", "H", "i"]  # the decoder's start first
    assert maps.self_attention.shape == (1, 4, 6, 6)  # layers, heads, queries, keys
    assert maps.decoder_self_attention.shape == (1, 4, 3, 3)
    assert maps.cross_attention.shape == (1, 4, 3, 6)  # target tokens over source tokens
    ```
    """

    tokens: list
    self_attention: np.ndarray
    target_tokens: list = None
    decoder_self_attention: np.ndarray = None
    cross_attention: np.ndarray = None


def attention_weights(model, inputs):
    """The attention weights of every layer and head of `model` on a batch of its inputs.

    Runs the model's forward pass in inference mode with each attention
    block asked for its probabilities (see the module's docstring). Padded
    keys get weight 0; rows of padded queries are not meaningful.

    Args:
        model: A keras_llm model (`build_bert` and its heads, `build_gpt`,
            `build_llama`, `build_seq2seq`, or one loaded from `.keras`).
        inputs: The model's inputs, a dict of int arrays as `model(inputs)`
            takes them (`token_ids`, `padding_mask`, ...).

    Returns:
        A dict with `"self_attention"` (float32 `[batch, layers, heads, T,
        T]`; a seq2seq model's encoder's) and, for a seq2seq model,
        `"decoder_self_attention"` `[batch, decoder layers, heads, U, U]`
        and `"cross_attention"` `[batch, decoder layers, heads, U, T]`.

    Example:

    ```python
    import numpy as np
    import keras_llm
    from keras_llm.inspect import attention_weights

    model = keras_llm.build_bert("bert_tiny", vocabulary_size=100, num_layers=1)
    weights = attention_weights(model, {
        "token_ids": np.array([[2, 7, 9, 3], [2, 5, 3, 0]], "int32"),
        "segment_ids": np.zeros((2, 4), "int32"),
        "padding_mask": np.array([[1, 1, 1, 1], [1, 1, 1, 0]], "int32"),
    })["self_attention"]
    assert weights.shape == (2, 1, 2, 4, 4)
    assert np.allclose(weights.sum(-1), 1.0, atol=1e-5)
    assert np.all(weights[1, ..., 3] == 0.0)  # the padded key
    ```
    """
    if not hasattr(model, "_run_through_graph") or not isinstance(inputs, dict):
        raise TypeError(
            "`attention_weights` takes a keras_llm model (a functional keras.Model) and a dict "
            f"of its inputs. Received: model={type(model).__name__}, "
            f"inputs={type(inputs).__name__}"
        )
    names = sorted(tensor.name for tensor in model.inputs)
    if sorted(inputs) != names:
        raise ValueError(
            f"`inputs` must have the model's inputs, {', '.join(names)}. "
            f"Received: inputs with {', '.join(sorted(inputs)) or 'no keys'}"
        )
    found = {kind: [] for kind in KINDS}

    def with_weights(layer):
        if not isinstance(layer, (TransformerBlock, LlamaBlock)):
            return layer

        def call(*args, **kwargs):
            outputs, *scores = layer(*args, return_attention_scores=True, **kwargs)
            if isinstance(layer, TransformerBlock) and layer.cross_attention:
                found["decoder_self_attention"].append(scores[0])
                found["cross_attention"].append(scores[1])
            else:
                found["self_attention"].append(scores[0])
            return outputs

        return call

    # Keys in sorted order: the order of `model.inputs`, which the walk pairs them with.
    tensors = {name: ops.convert_to_tensor(inputs[name], "int32") for name in names}
    with warnings.catch_warnings():
        # Keras warns of a softmax over one key; a one-token text has one, of weight 1.
        warnings.filterwarnings("ignore", "You are using a softmax over axis -1", UserWarning)
        model._run_through_graph(tensors, operation_fn=with_weights)
    if not found["self_attention"]:
        raise ValueError(
            "`model` has no keras_llm attention blocks (TransformerBlock, LlamaBlock) in its "
            f"graph. Received: model={model.name!r}"
        )
    # Per kind: L x [B, N, T, S] -> [B, L, N, T, S].
    return {
        kind: np.stack([np.asarray(w, "float32") for w in weights], axis=1)
        for kind, weights in found.items() if weights
    }


def attention_maps(model, text, tokenizer=None, *, target=None):
    """Every layer's and head's attention weights of `model` over the tokens of `text`.

    The text is laid out as the model reads it at inference, by the same
    code: a BERT's `[CLS] text [SEP]` (as its exports pack it), a GPT's or a
    Llama's prompt (as the `Generator` starts from it), a seq2seq model's
    source ending with its end token and, on the decoder side, the start
    token followed by `target` (teacher forcing, as in training).

    Args:
        model: A keras_llm model: `build_bert` or one of its heads,
            `build_gpt`, `build_llama`, `build_seq2seq` (or such a model
            loaded from `.keras` or `from_pretrained`).
        text: A string: the input (a seq2seq model's source).
        tokenizer: The tokenizer; default the one the model carries
            (`model.tokenizer`).
        target: A seq2seq model's target text (default: none, the decoder
            reads its start token alone); only for a seq2seq model.

    Returns:
        An `AttentionMaps`: the tokens as strings and float32 arrays
        `[layers, heads, queries, keys]` per kind of attention.

    Raises:
        ValueError: no tokenizer, a text longer than the model's context,
            a `target` for a model without a decoder.

    Example:

    ```python
    import numpy as np
    import keras_llm

    model = keras_llm.build_gpt(
        "gpt_nano", num_layers=2, tokenizer=keras_llm.tokenizers.ByteTokenizer()
    )
    maps = keras_llm.inspect.attention_maps(model, "Hi!")
    assert maps.tokens == ["H", "i", "!"]
    assert maps.self_attention.shape == (2, 4, 3, 3)  # layers, heads, queries, keys
    assert np.allclose(maps.self_attention.sum(-1), 1.0, atol=1e-5)
    assert np.all(np.triu(maps.self_attention, k=1) == 0.0)  # causal: no later tokens
    ```
    """
    tokenizer = _tokenizer(model, tokenizer)
    if not isinstance(text, str):
        raise TypeError(f"`text` must be a string. Received: text={text!r}")
    task = registry.get_task(model)
    seq2seq = task.specials == "seq2seq"
    if target is not None and not seq2seq:
        raise ValueError(
            f"`target` is a seq2seq model's decoder text; {task.description} has no decoder. "
            f"Received: target={target!r}"
        )
    if target is not None and not isinstance(target, str):
        raise TypeError(f"`target` must be a string. Received: target={target!r}")
    ids = _ids(tokenizer, text)
    context = model.max_sequence_length
    if task.specials == "bert":
        specials = registry.special_tokens(
            task.name, tokenizer, needed=("cls_token_id", "sep_token_id")
        )
        _check_length("text", len(ids) + 2, context, " with [CLS] and [SEP]")
        token_ids, segment_ids, padding_mask = bert_inputs(
            specials, tf.ragged.constant([ids], tf.int32), context
        )
        inputs = {"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": padding_mask}
        if "mask_positions" in {tensor.name for tensor in model.inputs}:
            # The masked-LM head gathers one position: it reads the encoder, which attends alike.
            inputs["mask_positions"] = np.zeros((1, 1), "int32")
    elif task.specials == "causal_lm":
        specials = registry.special_tokens(task.name, tokenizer)
        token_ids = prompt_ids(tf.ragged.constant([ids], tf.int32), specials.get("end_token_id"),
                               specials.get("bos_token_id")).to_tensor()
        _check_length("text", token_ids.shape[1], context)
        inputs = {"token_ids": token_ids, "padding_mask": tf.ones_like(token_ids)}
    elif seq2seq:
        specials = registry.special_tokens(
            task.name, tokenizer, needed=("start_token_id", "source_end_token_id")
        )
        _check_length("text", len(ids) + 1, context, " with the source end token")
        source = source_ids(tf.ragged.constant([ids], tf.int32), context,
                            specials["source_end_token_id"]).to_tensor()
        decoder = [specials["start_token_id"]] + (_ids(tokenizer, target) if target else [])
        _check_length("target", len(decoder), context, " with the start token")
        decoder = np.array([decoder], "int32")
        inputs = {
            "encoder_token_ids": source, "encoder_padding_mask": tf.ones_like(source),
            "decoder_token_ids": decoder, "decoder_padding_mask": np.ones_like(decoder),
        }
    else:  # a task added to the registry after this module
        raise ValueError(
            f"attention_maps reads BERTs, GPTs, Llamas and seq2seq models; {task.description} "
            f"lays out its text in no way it knows. Received: model with task={task.name!r}"
        )
    weights = {kind: w[0] for kind, w in attention_weights(model, inputs).items()}
    first = "encoder_token_ids" if seq2seq else "token_ids"
    return AttentionMaps(
        tokens=_token_strings(tokenizer, np.asarray(inputs[first])[0]),
        self_attention=weights["self_attention"],
        target_tokens=(
            _token_strings(tokenizer, inputs["decoder_token_ids"][0]) if seq2seq else None
        ),
        decoder_self_attention=weights.get("decoder_self_attention"),
        cross_attention=weights.get("cross_attention"),
    )


def _tokenizer(model, tokenizer):
    return tokenizer_of(
        model, tokenizer, "`model` carries no tokenizer (model.tokenizer is None): pass "
        "`tokenizer=`, or attach one (model.tokenizer = tokenizer).",
    )


def _ids(tokenizer, text):
    """The ids of one text, as a list of ints."""
    return [int(i) for i in np.asarray(tokenizer(text)).reshape(-1)]


def _check_length(argument, length, context, what=""):
    if length > context:
        raise ValueError(
            f"`{argument}` is {length} tokens long{what}; the model reads at most {context} "
            f"(its max_sequence_length). Received: a {argument} of {length} tokens"
        )


def _token_strings(tokenizer, ids):
    """Each id as the vocabulary spells it; a byte tokenizer's bytes as text (`\\xNN` if not UTF-8)."""
    strings = []
    for token_id in ids:
        token_id = int(token_id)
        if hasattr(tokenizer, "id_to_token"):
            token = tokenizer.id_to_token(token_id)
        else:
            token = tokenizer.detokenize(np.array([token_id], "int32"))
        token = token.numpy() if hasattr(token, "numpy") else token
        if isinstance(token, bytes):
            token = token.decode("utf-8", errors="backslashreplace")
        strings.append(str(token))
    return strings
