"""Real trl + peft training steps on the real SmolLM2-135M (CPU)."""

import json

import pytest
import torch

from revgen.dolly import load_pairs
from revgen.prompts import encode_prompt, get_template
from revgen.train.pairs import build_pairs
from revgen.train.trainer import LoraSettings, TrainConfig, merge_adapter, split_holdout, train

pytestmark = pytest.mark.slow


def completion_loss(model, tokenizer, pairs) -> float:
    """Mean loss over instruction + EOS tokens, the quantity training minimises."""
    losses = []
    model.eval()
    with torch.no_grad():
        for p in pairs:
            prompt = encode_prompt(tokenizer, p["prompt"])
            ids = tokenizer(p["prompt"] + p["completion"])["input_ids"] + [tokenizer.eos_token_id]
            labels = [-100] * len(prompt) + ids[len(prompt) :]
            out = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels]))
            losses.append(out.loss.item())
    return sum(losses) / len(losses)


def trained_pairs(info, tokenizer):
    cfg = info["config"]
    pairs, _ = build_pairs(
        load_pairs(cfg["data"]), get_template(cfg["template"]), tokenizer, max_length=cfg["max_length"]
    )
    return split_holdout(pairs[: cfg["max_rows"]], cfg["eval_holdout"], cfg["seed"])


def test_training_lowers_loss_and_changes_lora_weights(trained_adapter, base_model, tokenizer):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    out, info = trained_adapter
    train_pairs, held = trained_pairs(info, tokenizer)
    base = AutoModelForCausalLM.from_pretrained(base_model)
    before = completion_loss(base, tokenizer, train_pairs)
    tuned = PeftModel.from_pretrained(base, str(out))
    after = completion_loss(tuned, tokenizer, train_pairs)
    assert after < before - 0.5, (before, after)

    weights = load_file(str(out / "adapter_model.safetensors"))
    lora_b = [t for name, t in weights.items() if "lora_B" in name]
    assert lora_b and all(t.abs().sum() > 0 for t in lora_b)  # B starts at zero: every one moved


def test_adapter_reloads_and_generates_an_instruction_that_stops(trained_adapter, base_model, tokenizer):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out, _ = trained_adapter
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_model), str(out))
    prompt = get_template(str(out)).prompt("Paris is the capital and largest city of France.")
    ids = torch.tensor([encode_prompt(tokenizer, prompt)])
    gen = model.generate(ids, max_new_tokens=48, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    new = gen[0, ids.shape[1] :].tolist()
    assert tokenizer.decode(new, skip_special_tokens=True).strip()
    assert tokenizer.eos_token_id in new  # the model learned to stop


def test_run_json_records_the_run(trained_adapter):
    out, info = trained_adapter
    saved = json.loads((out / "run.json").read_text())
    assert saved["config_hash"] == info["config_hash"] and len(saved["config_hash"]) == 16
    assert saved["steps"] == 6 and len(saved["losses"]) == 6 and saved["eval_losses"]
    assert saved["tokens"] > 0 and saved["tokens_per_s"] > 0
    assert saved["data"]["train_rows"] == 12 and saved["data"]["heldout_rows"] == 4
    assert saved["data"]["sha256"] == "52d16f07fd361e10a626c65c1082b7841460fd732d5c976187519e972d5fe104"
    assert saved["plan"] == {
        "device": "cpu",
        "load_in_4bit": False,
        "dtype": "float32",
        "attn_implementation": "sdpa",
        "quant_skip_layers": 0,
        "fp8": False,
    }
    assert saved["lm_head_positions"] == "labelled"  # revgen.train.fused_head on CPU
    assert {"torch", "transformers", "trl", "peft"} <= set(saved["versions"])
    assert (out / "template.txt").read_text() == get_template("seed").text
    held = [json.loads(line) for line in (out / "heldout.jsonl").read_text().splitlines()]
    assert len(held) == 4 and set(held[0]) == {"instruction", "context", "response", "category"}
    assert load_pairs(str(out / "heldout.jsonl"))  # eval reads it back as Dolly data


def test_qlora_4bit_path_trains_on_cpu_with_bitsandbytes(tmp_path, base_model):
    cfg = TrainConfig(
        model=base_model,
        output_dir=str(tmp_path),
        max_length=128,
        max_rows=4,
        load_in_4bit=True,
        lora=LoraSettings(r=4, target_modules=["q_proj", "v_proj"]),
        trainer={"max_steps": 1, "per_device_train_batch_size": 2},
    )
    info = train(cfg)
    assert info["plan"]["load_in_4bit"] is True and info["steps"] == 1
    assert (tmp_path / "adapter_model.safetensors").is_file()


def test_merge_writes_a_bf16_model_that_matches_the_adapter(trained_adapter, base_model, tokenizer, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out, _ = trained_adapter
    merged_dir = merge_adapter(out, base_model, tmp_path / "merged")
    merged = AutoModelForCausalLM.from_pretrained(str(merged_dir))
    assert merged.dtype == torch.bfloat16 and (merged_dir / "template.txt").is_file()
    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_model), str(out))
    ids = torch.tensor([encode_prompt(tokenizer, get_template("seed").prompt("The Nile is a river in Africa."))])
    with torch.no_grad():
        a = merged(ids).logits.float().argmax(-1)
        b = peft_model(ids).logits.argmax(-1)
    assert (a == b).float().mean() > 0.9  # bf16 rounding may flip a rare near-tie


def test_throughput_counts_each_steps_own_tokens_whatever_logging_steps(tmp_path, base_model):
    """run.json's tokens/s once credited a whole logging window to one step (10x too high with
    logging_steps=10); each step's rate now comes from that step's own tokens."""
    cfg = TrainConfig(
        model=base_model,
        output_dir=str(tmp_path),
        max_length=96,
        max_rows=16,
        lora=LoraSettings(r=4, target_modules=["q_proj"]),
        trainer={"max_steps": 6, "per_device_train_batch_size": 2, "logging_steps": 3},
    )
    info = train(cfg)
    th = info["throughput"]
    assert th["steps_timed"] == 4  # 6 steps, 2 of warm-up
    overall = info["tokens"] / info["train_runtime_s"]  # trl's own token count over the whole run
    assert 0.3 * overall < th["tokens_per_s_median"] < 2 * overall, (th, overall)
