"""On a CPU revgen has trl's fused LM head score only labelled positions: same loss and gradients, fewer rows."""

import pytest
import torch

from revgen.train.fused_head import labelled_positions_only


@pytest.fixture(scope="module")
def fused_model(base_model):
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    model = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32)
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    return model


def _loss_and_grad(model, batch):
    model.zero_grad()
    out = model(**batch, fused_lm_head=True)
    out.loss.backward()
    grad = model.model.layers[-1].mlp.down_proj.weight.grad.clone()
    return out.loss.detach(), out.entropy.detach(), grad


def test_cpu_head_scores_labelled_positions_only_with_the_same_loss_and_gradients(fused_model, tokenizer, monkeypatch):
    import trl.trainer.utils as trl_utils

    texts = ["The Eiffel Tower is in Paris and was finished in 1889.", "Water boils at 100 degrees."]
    enc = tokenizer(texts, return_tensors="pt", padding=True)
    labels = enc["input_ids"].clone()
    labels[:, :-4] = -100  # a completion of the last 4 tokens, as SFT masks the prompt
    labels[enc["attention_mask"] == 0] = -100
    batch = {**enc, "labels": labels}
    rows = []
    original_apply = trl_utils._ChunkedLogProbFunction.apply

    def spy(hidden, *args):
        rows.append(hidden.shape[0])
        return original_apply(hidden, *args)

    monkeypatch.setattr(trl_utils._ChunkedLogProbFunction, "apply", spy)
    switch = trl_utils._use_triton
    full = _loss_and_grad(fused_model, batch)
    with labelled_positions_only("cpu") as mode:
        assert mode == "labelled"
        compact = _loss_and_grad(fused_model, batch)
    assert trl_utils._use_triton is switch  # restored on exit
    labelled = int((labels[:, 1:] != -100).sum())
    assert rows == [labels[:, 1:].numel(), labelled] and labelled < labels.numel() / 2
    torch.testing.assert_close(compact[0], full[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(compact[1], full[1], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(compact[2], full[2], rtol=1e-4, atol=1e-6)
    with labelled_positions_only("cuda") as mode:  # CUDA keeps trl's own (Triton, already labelled-only)
        assert mode == "trl default" and trl_utils._use_triton is switch
