"""``train.fp8``: the frozen base weights' matmuls in FP8 (revgen/train/fp8.py), checked on the real SmolLM2 on a
CPU (torch emulates the FP8 matmul) and its GPU kernels under Triton's interpreter."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from revgen.errors import UserError
from revgen.train import fp8
from revgen.train.trainer import LoraSettings, TrainConfig, train

ROOT = Path(__file__).resolve().parents[2]


def _rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def test_a_patched_frozen_linear_matches_its_bf16_maths_to_fp8_precision():
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 48, bias=True).requires_grad_(False)
    x = torch.randn(3, 5, 64, requires_grad=True)
    ref = lin(x)
    (ref_grad,) = torch.autograd.grad((ref**2).sum(), x)
    assert fp8.patch(torch.nn.Sequential(lin)) == 1
    out = lin(x)
    (grad,) = torch.autograd.grad((out**2).sum(), x)
    # e4m3 keeps 3 mantissa bits: a few percent of error, and not zero (the matmul really ran in FP8)
    assert 1e-3 < _rel(out, ref) < 0.06 and 1e-3 < _rel(grad, ref_grad) < 0.06
    assert out.shape == ref.shape and grad.shape == x.shape


def test_patch_takes_the_frozen_decoder_linears_not_the_adapters_or_the_head(base_model):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    layers = model.config.num_hidden_layers
    names = [n for n, _ in fp8._frozen_linears(model)]
    assert len(names) == 7 * layers  # q k v o gate up down: the LoRA-wrapped q/v through their base layer
    assert not [n for n in names if "lora_" in n or "lm_head" in n]
    assert sum(n.endswith("q_proj.base_layer") for n in names) == layers


@pytest.mark.slow
def test_fp8_training_follows_the_bf16_loss_curve(tmp_path, base_model):
    def run(on: bool) -> dict:
        cfg = TrainConfig(model=base_model, output_dir=str(tmp_path / f"fp8-{on}"), max_length=128, max_rows=12,
                          load_in_4bit=True, fp8=on, lora=LoraSettings(r=8, target_modules=["q_proj", "v_proj"]),
                          trainer={"max_steps": 4, "per_device_train_batch_size": 3, "learning_rate": 1e-3,
                                   "save_strategy": "no"})  # fmt: skip
        return train(cfg)

    plain, quant = run(False), run(True)
    assert quant["plan"]["fp8"] is True and plain["plan"]["fp8"] is False
    gaps = [abs(a - b) for a, b in zip(plain["losses"], quant["losses"])]
    assert len(gaps) == 4 and max(gaps) < 0.15, (plain["losses"], quant["losses"])
    assert plain["losses"] != quant["losses"]  # the FP8 path was taken
    assert json.loads((tmp_path / "fp8-True" / "run.json").read_text())["config"]["fp8"] is True


def test_fp8_must_be_a_boolean(tmp_path, base_model):
    with pytest.raises(UserError, match="fp8 must be true or false"):
        TrainConfig(model=base_model, output_dir=str(tmp_path), fp8="yes")


KERNELS = r"""
import torch
from revgen.train import fp8
rows, cast = fp8._kernels()
torch.manual_seed(0)
out = {}
x = torch.randn(37, 80).to(torch.bfloat16) * torch.logspace(-2, 2, 37)[:, None].to(torch.bfloat16)
q = torch.empty(48, 80, dtype=fp8.E4M3)
s = torch.empty(48, 1)
rows[(48,)](x, q, s, 37, 80, x.stride(0), q.stride(0), BLOCK=32)  # 37 rows, padded to 48
out["row_scales"] = torch.allclose(s[:37], x.float().abs().amax(1, keepdim=True) / 448)
out["pad"] = [q[37:].float().abs().max().item(), s[37:].min().item(), s[37:].max().item()]
same = lambda a, b: bool((a.contiguous().view(torch.uint8) == b.contiguous().view(torch.uint8)).all())
o = torch.empty(37, 80, dtype=fp8.E4M3)  # the weight cast, given the row kernel's scales, writes the same bytes
cast[(1, 2)](x, s[:37].flatten().contiguous(), o, 37, 80, PER_ROW=True, TRANS=False, BR=64, BC=64)
out["rows_as_cast"] = same(q[:37], o)
w = torch.randn(96, 80).to(torch.bfloat16)
by_col = w.float().abs().amax(0) / 448
plain, flipped = torch.empty(96, 80, dtype=fp8.E4M3), torch.empty(80, 96, dtype=fp8.E4M3)
cast[(2, 2)](w, by_col, plain, 96, 80, PER_ROW=False, TRANS=False, BR=64, BC=64)
cast[(2, 2)](w, by_col, flipped, 96, 80, PER_ROW=False, TRANS=True, BR=64, BC=64)
out["transposed"] = same(flipped.t(), plain)
print(out)
"""


def test_the_gpu_kernels_quantise_pad_and_transpose_under_tritons_interpreter():
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-c", KERNELS], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    out = eval(res.stdout.strip().splitlines()[-1])
    assert out["row_scales"] is True
    assert out["pad"] == [0.0, 1.0, 1.0]  # padding rows: zeros with scale 1
    # the interpreter's own FP8 rounding is not the GPU's (bench/fp8_matmul.py checks the values there): here the
    # indexing, padding and transposition, byte for byte between the kernels
    assert out["rows_as_cast"] and out["transposed"], out
