"""`keras-llm finetune --lora RANK`: only the adapters and the head train; saved, adapters alone, served merged."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_llm
from keras_llm.training import lora_spec
import keras_llm_cli
from tests.test_cli_finetune import _checkpoint, _printed_scores, _sentiment_rows


@pytest.mark.slow
def test_finetune_lora_trains_adapters_and_head_only_and_serves_them_merged(capsys, tmp_path):
    _sentiment_rows(tmp_path / "train.tsv")
    code = keras_llm_cli.main([
        "finetune", "--checkpoint", _checkpoint(tmp_path), "--task", "classify",
        "--train", str(tmp_path / "train.tsv"), "--eval", str(tmp_path / "train.tsv"),
        "--epochs", "16", "--batch-size", "8", "--lora", "4",
        # LoRA on a frozen random encoder needs a larger step than full fine-tuning's 1e-2.
        "--learning-rate", "5e-2",
        "--output", str(tmp_path / "out.keras"), "--export", str(tmp_path / "served"),
    ])
    assert code == 0
    out = capsys.readouterr().out
    # Two projections of [16, 16] at rank 4, and the fresh Dense(2) head: 4*(16+16)*2 + 16*2 + 2.
    assert "LoRA rank 4: 290 trainable parameters" in out
    assert _printed_scores(out)["accuracy"] >= 0.9
    model = keras.saving.load_model(tmp_path / "out.keras")
    assert lora_spec(model)["rank"] == 4 and os.path.exists(tmp_path / "out.lora.h5")
    # Every weight of the checkpoint but the head is as it was; the adapters moved.
    checkpoint = keras_llm.from_pretrained(str(tmp_path / "tiny-bert"), task="backbone")
    trained = {w.path: w.numpy() for w in model.weights}
    for weight in checkpoint.weights:
        np.testing.assert_array_equal(trained[weight.path], weight.numpy(), err_msg=weight.path)
    assert np.abs(trained["transformer_layer_0/self_attention_value/lora_kernel_b"]).max() > 0
    # The export serves the merged model: its probabilities are the LoRA model's.
    served = tf.saved_model.load(str(tmp_path / "served" / "1"))
    ids = np.array([[2, 19, 11, 20, 5, 3]], "int32")
    x = {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": np.ones_like(ids)}
    logits = served.signatures["classify_ids"](**{k: tf.constant(v) for k, v in x.items()})["logits"]
    np.testing.assert_allclose(logits.numpy(), np.asarray(model(x)), atol=1e-5)


def test_finetune_lora_targets_that_match_no_layer_are_refused_before_training(capsys, tmp_path):
    _sentiment_rows(tmp_path / "train.tsv")
    checkpoint = _checkpoint(tmp_path)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(SystemExit) as exit_info:
        keras_llm_cli.main([
            "finetune", "--checkpoint", checkpoint, "--task", "classify",
            "--train", str(tmp_path / "train.tsv"), "--lora", "4", "--lora-targets", "query,gate",
            "--output", str(tmp_path / "out.keras"),
        ])
    assert exit_info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("keras-llm finetune: error: --lora 4 --lora-targets query,gate:"), last
    assert "'gate'" in last, last
    assert sorted(os.listdir(tmp_path)) == before
