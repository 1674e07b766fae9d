"""The Humpback rubric as log-probabilities: P("1".."5") after "Score:", from the judge wherever it runs.

- ``transformers`` (``Rubric``): one batched forward pass over left-padded prompts; the softmax over
  the five score tokens at the last position. Every record is scored.
- ``vllm``: the same prompt tokens as the transformers rubric, each of "1".."5" appended, scored with
  vLLM's prompt log-probabilities: log p(digit | prompt) exactly, so the probabilities equal the
  transformers judge's up to kernel numerics (a test checks it). Every record is scored.
- ``openai``: an OpenAI-compatible server's chat endpoint (``vllm serve``, TGI, llama.cpp, SGLang,
  a hosted API) with the rubric as the user message and ``logprobs`` + ``top_logprobs``. Where the
  server can continue a prefilled assistant message (vLLM's and SGLang's ``continue_final_message``)
  the reply starts as "Score:", the transformers judge's prompt, and the model writes the digit
  next (after a space token with tokenizers that split digits off); other servers (a 400 to that
  request) get the plain chat request. Either way, greedy, the five probabilities are read from
  the top log-probs at the first generated score digit; a reply with no digit is unparsed (score
  None, counted in the parse rate) and a digit outside the top 20 counts as probability 0. A record
  longer than the judge's context (the server's 400) stays unscored too, and the run goes on.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os

from revgen.errors import UserError

DIGITS = "12345"
log = logging.getLogger(__name__)


def score_token_ids(tokenizer) -> tuple[str, list[int]]:
    """A prompt suffix and the five token ids that can follow it for "1".."5" (one token each)."""
    for suffix, pad in (("Score:", " "), ("Score: ", "")):
        base = tokenizer(suffix, add_special_tokens=False)["input_ids"]
        ids = []
        for d in "12345":
            full = tokenizer(suffix + pad + d, add_special_tokens=False)["input_ids"]
            if full[: len(base)] != base or len(full) != len(base) + 1:
                break
            ids.append(full[-1])
        if len(ids) == 5 and len(set(ids)) == 5:
            return suffix, ids
    raise UserError("the judge's tokenizer has no single tokens for the scores 1-5 after 'Score:'")


def rubric_text(record: dict) -> str:
    """Humpback's rubric for one record, asking for the score alone ("Score: <rating>")."""
    from revgen.curate.judge import RUBRIC

    text = RUBRIC.replace("{instruction}", record["instruction"]).replace("{output}", record["output"])
    return text.replace('Please first provide a brief reasoning you used to derive the rating score, and then write '
                        '"Score: <rating>" in the last line.', 'Answer with "Score: <rating>".')  # fmt: skip


class Rubric:
    """Log-probability rubric scores (see the module doc)."""

    name = "rubric"

    def __init__(self, model, tokenizer, batch_size: int = 8):
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        self.suffix, self.ids = score_token_ids(tokenizer)

    def prompt(self, record: dict) -> str:
        text = rubric_text(record)
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            text = tok.apply_chat_template(
                [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
            )
        else:
            text += "\n\n"
        return text + self.suffix

    def probabilities(self, records: list[dict]) -> list[list[float]]:
        """P("1".."5" | prompt), renormalised over the five, for each record."""
        import torch

        out = []
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        prompts = [self.tokenizer(self.prompt(r))["input_ids"] for r in records]
        for start in range(0, len(prompts), self.batch_size):
            batch = prompts[start : start + self.batch_size]
            width = max(map(len, batch))
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for row, p in enumerate(batch):  # left padding: the last position is every prompt's end
                ids[row, width - len(p) :] = torch.tensor(p)
                mask[row, width - len(p) :] = 1
            with torch.inference_mode():
                logits = self.model(
                    input_ids=ids.to(self.model.device), attention_mask=mask.to(self.model.device)
                ).logits
            probs = torch.softmax(logits[:, -1, self.ids].float(), dim=-1)
            out.extend(probs.tolist())
        return out

    def score(self, records: list[dict]) -> list[dict]:
        """Expected score and argmax per record (None for a judge reply with no score digit)."""
        res = []
        for p in self.probabilities(records):
            if p is None:
                res.append({"rubric": None, "rubric_argmax": None})
                continue
            res.append({"rubric": round(sum((i + 1) * x for i, x in enumerate(p)), 4),
                        "rubric_argmax": max(range(5), key=lambda i: p[i]) + 1})  # fmt: skip
        return res

    parse_rate = 1.0  # log-probabilities of the score tokens: every record is scored

    def close(self) -> None:
        pass


class VLLMRubric(Rubric):
    def __init__(self, ref: str, batch_size: int = 64, dtype: str = "auto", engine: dict | None = None):
        from revgen.generate import get_generator
        from revgen.models import load_tokenizer, resolve_model

        model = _merged_or_plain(ref, dtype)
        self.gen = get_generator("vllm", model, None, dtype=dtype, max_model_len=4096, options=engine or {}).load()
        super().__init__(None, load_tokenizer(resolve_model(model)), batch_size)

    def probabilities(self, records: list[dict]) -> list[list[float]]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        prompts = [self.tokenizer(self.prompt(r))["input_ids"] for r in records]
        batch = [TokensPrompt(prompt_token_ids=p + [d]) for p in prompts for d in self.ids]
        outs = self.gen.llm.generate(batch, SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0.0),
                                     use_tqdm=False)  # fmt: skip
        out = []
        for i in range(len(records)):
            logps = []
            for j, d in enumerate(self.ids):
                last = outs[i * 5 + j].prompt_logprobs[-1]  # {token id: Logprob} at the appended digit
                logps.append(last[d].logprob)
            top = max(logps)
            exp = [math.exp(x - top) for x in logps]
            out.append([x / sum(exp) for x in exp])
        return out

    def close(self) -> None:
        self.gen.close()


class ServerRubric(Rubric):
    def __init__(self, served_model: str, base_url: str | None, api_key_env: str | None = None,
                 concurrency: int = 16, timeout: float = 120, max_retries: int = 6):  # fmt: skip
        from openai import AsyncOpenAI

        from revgen.generate.openai_server import public_url

        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        if not self.base_url:
            raise UserError("a rubric judge on a server needs score.base_url (e.g. http://127.0.0.1:8000/v1)")
        if not served_model:
            raise UserError("a rubric judge on a server needs score.served_model (the model name the server serves)")
        key_env = api_key_env or "OPENAI_API_KEY"
        key = os.environ.get(key_env) or (None if api_key_env else "EMPTY")
        if key is None:
            raise UserError(f"rubric judge: the environment variable {key_env} (score.api_key_env) is not set")
        self.served, self.concurrency, self.public = served_model, concurrency, public_url(self.base_url)
        self._args = {"base_url": self.base_url, "api_key": key, "timeout": timeout, "max_retries": max_retries}
        AsyncOpenAI(**self._args)  # bad arguments fail here
        self.tokenizer, self.batch_size, self.parsed, self.seen = None, concurrency, 0, 0
        self.prefill: bool | None = None  # None: not yet known whether the server continues a prefilled reply
        self.too_long = 0  # records longer than the judge's context (unscored)

    def probabilities(self, records: list[dict]) -> list[list[float] | None]:
        res = asyncio.run(self._all(records))
        self.seen += len(res)
        self.parsed += sum(r is not None for r in res)
        return res

    async def _all(self, records):
        from openai import AsyncOpenAI

        gate = asyncio.Semaphore(self.concurrency)
        async with AsyncOpenAI(**self._args) as client:

            async def one(r):
                async with gate:
                    return await self._one(client, r)

            return await asyncio.gather(*(one(r) for r in records))

    async def _one(self, client, record):
        import openai

        user = {"role": "user", "content": rubric_text(record)}
        try:
            if self.prefill is not False:
                try:
                    res = await client.chat.completions.create(
                        model=self.served, messages=[user, {"role": "assistant", "content": "Score:"}], max_tokens=4,
                        temperature=0.0, logprobs=True, top_logprobs=20, seed=0,
                        extra_body={"continue_final_message": True, "add_generation_prompt": False})  # fmt: skip
                    self.prefill = True
                    return digit_probabilities(_content(res))
                except openai.BadRequestError as exc:
                    if self.prefill or _too_long(exc):
                        raise
                    self.prefill = False
                    log.warning("rubric judge %s cannot continue a prefilled reply: asking for the score in plain chat",
                                self.public)  # fmt: skip
            res = await client.chat.completions.create(
                model=self.served, messages=[user], max_tokens=16, temperature=0.0, logprobs=True, top_logprobs=20,
                seed=0)  # fmt: skip
        except openai.BadRequestError as exc:
            if not _too_long(exc):
                raise UserError(
                    f"rubric judge {self.public} refused a request (400): {str(exc.message)[:300]}"
                ) from None
            self.too_long += 1  # this record does not fit the judge's context: unscored, the run goes on
            if self.too_long == 1:
                log.warning("rubric judge %s: a record exceeds its context length; such records stay unscored "
                            "(counted in the parse rate)", self.public)  # fmt: skip
            return None
        except openai.APIStatusError as exc:
            raise UserError(f"rubric judge {self.public} answered {exc.status_code} after retries: "
                            f"{str(exc.message)[:300]}") from None  # fmt: skip
        except openai.APIConnectionError as exc:
            raise UserError(f"rubric judge {self.public} unreachable after retries: {exc}") from None
        return digit_probabilities(_content(res))

    @property
    def parse_rate(self) -> float | None:
        return round(self.parsed / self.seen, 4) if self.seen else None


def _too_long(exc) -> bool:
    """A 400 because the prompt does not fit the judge's context (vLLM, TGI, OpenAI wordings)."""
    text = str(getattr(exc, "message", "") or exc).lower()
    return "context length" in text or "maximum context" in text or "too long" in text


def logps_init() -> dict:
    return {d: -math.inf for d in DIGITS}


def _content(res) -> list:
    lp = res.choices[0].logprobs
    return (lp.content or []) if lp else []


def digit_probabilities(content) -> list[float] | None:
    """P("1".."5") renormalised over the five at the first generated token that is a score digit;
    None when there is none. ``content``: the chat API's per-token logprob entries."""
    for tok in content:
        if tok.token.strip() in logps_init():
            logps = logps_init()
            for alt in tok.top_logprobs or []:
                d = alt.token.strip()
                if d in logps and alt.logprob > logps[d]:
                    logps[d] = alt.logprob
            logps[tok.token.strip()] = max(logps[tok.token.strip()], tok.logprob)
            top = max(logps.values())
            exp = [math.exp(logps[d] - top) for d in DIGITS]
            return [x / sum(exp) for x in exp]
    return None


def _merged_or_plain(ref: str, dtype: str = "auto") -> str:
    """vLLM serves plain model folders: an adapter dir is merged once into revgen's cache."""
    from pathlib import Path

    from revgen.models import adapter_base_model, merged_dir, resolve_model

    if (Path(ref) / "adapter_config.json").is_file():
        return str(merged_dir(Path(ref), adapter_base_model(Path(ref)), dtype))
    return resolve_model(ref)
