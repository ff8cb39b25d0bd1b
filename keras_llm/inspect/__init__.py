"""A look inside the models: attention maps, and plots of them, of positions and of training.

`attention_maps(model, text)` gives every layer's and head's attention
weights over a text's tokens (a BERT, a GPT, a Llama, a seq2seq model's
encoder, decoder and cross-attention); `attention_weights(model, inputs)`
the same for a batch of model inputs. The plots return a
`matplotlib.figure.Figure` (matplotlib is optional: `pip install
keras-llm[plot]`): `plot_attention` (one head, or a grid of layers x
heads, with the tokens as labels), `plot_positional_encoding` (the
sinusoidal table of `keras_llm.layers.PositionalEncoding`) and
`plot_history` (loss, perplexity and accuracy of a `fit`).
"""

from keras_llm.inspect.attention import AttentionMaps, attention_maps, attention_weights
from keras_llm.inspect.plots import plot_attention, plot_history, plot_positional_encoding

__all__ = [
    "AttentionMaps",
    "attention_maps",
    "attention_weights",
    "plot_attention",
    "plot_history",
    "plot_positional_encoding",
]
