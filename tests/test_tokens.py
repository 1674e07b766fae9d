"""Training and inference see the same prompt tokens; the EOS the model must learn is a label."""

import pytest

from revgen.prompts import encode_prompt, get_template
from revgen.train.pairs import build_pairs


@pytest.fixture(scope="module")
def sft_trainer(base_model, tokenizer, dolly_rows, tmp_path_factory):
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    pairs, _ = build_pairs(dolly_rows[:6], get_template("seed"), tokenizer, max_length=256)
    ds = Dataset.from_list([{"prompt": p["prompt"], "completion": p["completion"]} for p in pairs])
    args = SFTConfig(
        output_dir=str(tmp_path_factory.mktemp("tok")),
        max_length=256,
        use_cpu=True,
        bf16=False,
        report_to="none",
        per_device_train_batch_size=2,
    )
    model = AutoModelForCausalLM.from_pretrained(base_model)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=ds,
        processing_class=tokenizer,
        peft_config=LoraConfig(r=4, target_modules=["q_proj"]),
    )
    return trainer, pairs


def test_pad_token_differs_from_eos(tokenizer):
    assert tokenizer.pad_token_id is not None and tokenizer.pad_token_id != tokenizer.eos_token_id


def test_inference_prompt_tokens_equal_training_prompt_tokens(sft_trainer, tokenizer):
    trainer, pairs = sft_trainer
    for example, pair in zip(trainer.train_dataset, pairs):
        prompt_ids = encode_prompt(tokenizer, pair["prompt"])
        n = len(prompt_ids)
        assert example["input_ids"][:n] == prompt_ids
        assert example["labels"][:n] == [-100] * n  # the prompt carries no loss
        assert example["labels"][n:] == example["input_ids"][n:]  # the instruction and EOS do


def test_final_eos_label_is_not_masked(sft_trainer, tokenizer):
    trainer, _ = sft_trainer
    examples = [trainer.train_dataset[i] for i in range(2)]
    batch = trainer.data_collator(examples)
    for row, ex in enumerate(examples):
        n = len(ex["input_ids"])
        labels = batch["labels"][row].tolist()
        assert ex["input_ids"][-1] == tokenizer.eos_token_id
        assert labels[n - 1] == tokenizer.eos_token_id  # EOS is a training target
        assert all(label == -100 for label in labels[n:])  # padding is not
    lengths = [len(e["input_ids"]) for e in examples]
    shorter = lengths.index(min(lengths))
    if lengths[0] != lengths[1]:
        assert batch["input_ids"][shorter, -1].item() == tokenizer.pad_token_id != tokenizer.eos_token_id
