"""The transformers backend: sdpa_gqa matches sdpa, bucketing keeps the caller's order, attention per device."""

import pytest
import torch

from revgen.generate import Sampling, get_generator
from revgen.generate.attention import register
from revgen.prompts import encode_prompt, get_template

TEXTS = [
    "Paris is the capital of France.",
    "The Nile is the longest river in Africa and flows north into the sea.",
    "Bees make honey.",
]


@pytest.fixture(scope="module")
def prompts(tokenizer):
    return [encode_prompt(tokenizer, get_template("seed").prompt(t)) for t in TEXTS]


def test_sdpa_gqa_matches_sdpa_on_left_padded_batches(base_model, tokenizer, prompts):
    from transformers import AutoModelForCausalLM

    width = max(map(len, prompts))
    ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    outs = {}
    for impl in ("sdpa", register()):
        model = AutoModelForCausalLM.from_pretrained(base_model, attn_implementation=impl).eval()
        with torch.inference_mode():
            gen = model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=12,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                output_logits=True,
                return_dict_in_generate=True,
            )
        outs[impl] = gen
    a, b = outs["sdpa"], outs["sdpa_gqa"]
    assert torch.equal(a.sequences, b.sequences)
    for la, lb in zip(a.logits, b.logits):  # decode steps go through the grouped-matmul path
        assert torch.allclose(la, lb, atol=1e-3, rtol=1e-3)


def test_length_bucketing_returns_results_in_caller_order(base_model, prompts):
    gen = get_generator("transformers", base_model, batch_size=2, dtype="float32").load()
    greedy = Sampling(temperature=0.0, max_new_tokens=8)
    batched = gen.generate(prompts, greedy, [0, 0, 0])
    single = [gen.generate([p], greedy, [0])[0] for p in prompts]
    assert [c[0].prompt_tokens for c in batched] == [len(p) for p in prompts]
    assert [c[0].text for c in batched] == [c[0].text for c in single]
    fixed = gen.generate(prompts, Sampling(temperature=0.0, max_new_tokens=5, ignore_eos=True), [0, 0, 0])
    assert all(c[0].n_tokens == 5 and c[0].finish_reason == "length" for c in fixed)


def test_attention_choice_per_device_and_head_layout():
    from transformers import LlamaConfig

    from revgen.generate.attention import choose

    mha = LlamaConfig(num_attention_heads=32, num_key_value_heads=32)
    gqa = LlamaConfig(num_attention_heads=32, num_key_value_heads=8)
    assert choose(mha, cuda=True) == "sdpa"  # transformers' sdpa: no KV copy without groups
    assert choose(gqa, cuda=True) == "sdpa_gqa"  # would otherwise repeat_kv the cache every step
    assert choose(mha, cuda=False) == choose(gqa, cuda=False) == "sdpa_gqa"


def test_batches_are_planned_from_a_token_budget():
    from revgen.generate.hf import bucket, plan_batches

    lengths = [300, 20, 1000, 50, 60, 700, 20, 128, 129]
    plain = plan_batches(lengths, 128, cap=4, budget=None)
    assert [len(b) for b in plain] == [4, 4, 1] and sorted(i for b in plain for i in b) == list(range(9))
    planned = plan_batches(lengths, 128, cap=64, budget=1200)
    for b in planned:  # every batch fits: sequences x (widest prompt + new tokens) <= budget
        assert len(b) * (max(lengths[i] for i in b) + 128) <= 1200 or len(b) == 1
    assert [lengths[b[0]] for b in planned] == sorted(lengths[b[0]] for b in planned)  # short prompts first
    static = plan_batches(lengths, 128, cap=64, budget=None, static=True)
    assert all(len({bucket(lengths[i]) for i in b}) == 1 for b in static)  # one shape bucket per batch
    assert [bucket(x) for x in (1, 128, 129, 300, 1000)] == [128, 128, 256, 512, 1024]


@pytest.mark.slow
def test_each_static_cache_bucket_gets_its_own_length(base_model):
    """transformers sizes a new static cache to the longest any earlier call used; after one wide
    bucket every narrow batch of later shards got a cache that long (out of memory on a GPU)."""
    opts = {"generate_kwargs": {"cache_implementation": "static", "disable_compile": True}}
    gen = get_generator("transformers", base_model, batch_size=4, dtype="float32", options=opts).load()
    greedy = Sampling(temperature=0.0, max_new_tokens=4, ignore_eos=True)
    wide, narrow = [list(range(100, 400))], [list(range(100, 120))]
    gen.generate(wide, greedy, [0])
    assert gen.hf_model._previous_max_cache_length == 512 + 4 - 1  # the 300-token prompt's bucket (+ new - 1)
    out = gen.generate(narrow, greedy, [0])
    assert gen.hf_model._previous_max_cache_length == 128 + 4 - 1 and out[0][0].n_tokens == 4


@pytest.mark.parametrize("sampling", [Sampling(temperature=0.0, max_new_tokens=40),
                                      Sampling(temperature=0.7, top_p=0.9, max_new_tokens=40, n=2),
                                      Sampling(temperature=1.0, max_new_tokens=10, ignore_eos=True)],
                         ids=["greedy", "sampled-n2", "ignore-eos"])  # fmt: skip
def test_decode_graphs_loop_gives_generates_tokens(base_model, tokenizer, sampling):
    """engine.decode: graphs runs revgen's own static-cache loop (CUDA graphs on a GPU; the same loop
    uncaptured here): prefill, sampling order and stopping as transformers' generate, token for token."""
    asks = ["What is the capital of France? One word.", "Name a river in Africa.", "Say hello."]  # chat: they stop
    prompts = [list(tokenizer.apply_chat_template([{"role": "user", "content": a}], add_generation_prompt=True,
                                                  tokenize=True, return_dict=True)["input_ids"]) for a in asks]  # fmt: skip
    seeds = [11, 12, 13]
    outs = {}
    for mode in ("generate", "graphs"):
        gen = get_generator("transformers", base_model, batch_size=3, dtype="float32", options={"decode": mode}).load()
        outs[mode] = gen.generate(prompts, sampling, seeds)
    assert outs["graphs"] == outs["generate"]
    texts = [c.text for cands in outs["graphs"] for c in cands]
    assert len(texts) == 3 * sampling.n and all(texts)
    if sampling.ignore_eos:
        assert all(c.n_tokens == 10 and c.finish_reason == "length" for cands in outs["graphs"] for c in cands)
    else:
        assert any(c.finish_reason == "stop" for cands in outs["graphs"] for c in cands)


def test_decode_graphs_refuses_generate_kwargs_it_would_ignore(base_model):
    from revgen.errors import UserError

    opts = {"decode": "graphs", "generate_kwargs": {"cache_implementation": "static", "repetition_penalty": 1.2}}
    gen = get_generator("transformers", base_model, batch_size=2, dtype="float32", options=opts).load()
    with pytest.raises(UserError, match=r"repetition_penalty"):
        gen.generate([[1, 2, 3]], Sampling(temperature=0.0, max_new_tokens=2), [0])
    with pytest.raises(UserError, match=r"engine.decode must be one of"):
        get_generator("transformers", base_model, options={"decode": "fast"}).load().generate(
            [[1, 2, 3]], Sampling(temperature=0.0, max_new_tokens=2), [0]
        )


def test_shared_prefix_decoding_gives_each_prompts_own_greedy_tokens_and_log_probs(base_model, tokenizer):
    """generate_shared decodes a passage's candidates on one prefill of it: greedy, each candidate's
    tokens are what generate gives its whole prompt alone, and the log-probabilities it returns for
    the forced opener and the generated tokens are a teacher-forced pass's."""
    from revgen.lm import Scorer

    asks = ["Name a river in Africa.", "Say hello to the Eiffel Tower in French."]
    heads = [tokenizer.apply_chat_template([{"role": "user", "content": a}], add_generation_prompt=True,
                                           tokenize=False) for a in asks]  # fmt: skip
    groups = [[(encode_prompt(tokenizer, h), 0)] + [(encode_prompt(tokenizer, h + w), 0) for w in ("The", "Sure")]
              for h in heads]  # fmt: skip
    for g, h in zip(groups, heads):  # the forced tail: what each prompt adds to the free one
        g[1:] = [(p, len(p) - len(g[0][0])) for p, _ in g[1:]]
        assert all(p[: len(g[0][0])] == g[0][0] for p, _ in g)
    gen = get_generator("transformers", base_model, batch_size=8, dtype="float32").load()
    greedy = Sampling(temperature=0.0, max_new_tokens=24)
    got = gen.generate_shared(groups, greedy, [1, 2])
    alone = gen.generate([p for g in groups for p, _ in g], greedy, [1] * 6)
    assert [c.text for cands in got for c in cands] == [cands[0].text for cands in alone]
    assert [c.finish_reason for cands in got for c in cands] == [cands[0].finish_reason for cands in alone]
    scorer = Scorer(gen.hf_model, tokenizer)
    for g, cands in zip(groups, got):
        for (prompt, forced), c in zip(g, cands):
            assert len(c.fit_ids) == len(c.fit_logprobs) == forced + c.n_tokens + (c.finish_reason == "stop")
            head = prompt[: len(prompt) - forced]
            (nll,) = scorer._batch([head], [(0, c.fit_ids)])
            assert abs(-sum(c.fit_logprobs) - nll) < 1e-2 * len(c.fit_ids)


def test_vllm_plan_reads_forced_tokens_off_the_request_that_ends_before_them():
    """A passage's candidates on vLLM: identical free samples are one request of n, an opener's first
    token is scored on the free request, a second one on a one-token probe of the prompt before it."""
    from revgen.generate.vllm_shared import plan

    free, other = [1, 2, 3], [5, 6]
    groups = [[(free, 0), (free, 0), (free + [7], 1), (free + [8, 9], 2)], [(other, 0), (other + [4], 1)]]
    requests, cands, forced_at = plan(groups, [[10, 10, 11, 12], [20, 21]])
    assert [(r.prompt, r.n, r.seed, r.probe, r.score, r.members) for r in requests] == [
        (free, 2, 10, False, [7, 8], [0, 1]),
        (free + [7], 1, 11, False, [], [2]),
        (free + [8, 9], 1, 12, False, [], [3]),
        (other, 1, 20, False, [4], [4]),
        (other + [4], 1, 21, False, [], [5]),
        (free + [8], 1, 12, True, [9], []),
    ]
    assert cands == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1)]
    assert forced_at == [[], [], [(0, 7)], [(0, 8), (5, 9)], [], [(3, 4)]]
    # two free candidates with their own seeds are two requests
    requests, _, _ = plan([[(free, 0), (free, 0)]], [[1, 2]])
    assert [(r.n, r.seed) for r in requests] == [(1, 1), (1, 2)]
