"""Reference byte-level BPE tokenizers of each kind, trained by Hugging Face `tokenizers`, and their stress set."""

import json

import tokenizers as hf
from tokenizers import Regex, decoders, normalizers, pre_tokenizers, processors

from keras_llm.tokenizers._pre_tokenizers import LLAMA3_SPLIT, QWEN2_SPLIT
from tests.tokenizers.serving_check import STRESS, TRAINING_CORPUS

KINDS = ("gpt2", "llama3", "qwen2", "smollm")
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] "
    "+ '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    "{% endif %}"
)
# The stress set, with code, whitespace runs, digits, decomposed accents and
# added tokens written in the text (whole, next to text, and broken).
TEXTS = STRESS + [
    "def f(x):\n    return x  # note\n\n\tpass\n", "\n\n  \t", "trailing spaces   ", "a  12345 678",
    "x  \n y\r\n\r\n z", "  \nx", "It'S 'LL I'M 'Ve", "1 2  3\t4\n5", "😀😀 a 😀\n\n", "a  .x",
    "e\u0301 A\u030a \u212b \u1100\u1161\u11a8 q\u0307\u0323", "١٢٣٤ ٥ Ⅻ ½",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "x<|endoftext|>y <|eot_id|> <think>hmm</think>", "<|im_start <|im_end|<|im_end|>|>", "<think><think>",
]
CORPUS = TRAINING_CORPUS + [
    "def f(x):\n    return x  # note\n\n\tpass\n", "a  b   c\n\n  \t d 12345 678 90",
    "It's  'LL  I'M 'Ve\r\n\r\n  done.  ", "<|im_start|>user\nhello there<|im_end|>",
] * 20


def pipeline(kind):
    """(normalizer, pre_tokenizer) of a kind, as its tokenizer.json has them."""
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    without_regex = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    return {
        "gpt2": (None, byte_level),
        "llama3": (None, pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"), without_regex])),
        "qwen2": (normalizers.NFC(), pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"), without_regex])),
        "smollm": (None, pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), byte_level])),
    }[kind]


def train(kind, vocabulary_size=600):
    """A `tokenizers.Tokenizer` of `kind`: trained BPE, the specials first, then `<|eot_id|>`
    added outside the model's vocabulary (as Llama 3's are) and `<think>`, `</think>` as plain added
    tokens; Llama 3's takes whole-word tokens first and adds `<|endoftext|>` as its BOS."""
    tokenizer = hf.Tokenizer(hf.models.BPE(ignore_merges=kind == "llama3"))
    tokenizer.normalizer, tokenizer.pre_tokenizer = pipeline(kind)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = hf.trainers.BpeTrainer(
        vocab_size=vocabulary_size, special_tokens=SPECIAL, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(CORPUS, trainer)
    tokenizer.add_special_tokens(["<|eot_id|>"])
    tokenizer.add_tokens([hf.AddedToken("<think>", normalized=False),
                          hf.AddedToken("</think>", normalized=False)])
    if kind == "llama3":
        tokenizer.post_processor = processors.TemplateProcessing(
            single="<|endoftext|> $A", special_tokens=[("<|endoftext|>", 0)])
    return tokenizer


def write_directory(directory, kind, tokenizer_class="PreTrainedTokenizerFast"):
    """A Hugging Face directory of `kind`: tokenizer.json and tokenizer_config.json."""
    tokenizer = train(kind)
    tokenizer.save(str(directory / "tokenizer.json"))
    config = {"tokenizer_class": tokenizer_class, "bos_token": "<|endoftext|>",
              "eos_token": "<|im_end|>", "chat_template": CHATML}
    if kind != "llama3":  # Llama 3's adds its BOS by its post-processor alone
        config["add_bos_token"] = False
    (directory / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return tokenizer
