"""OpenAI-compatible server backend: ``vllm serve``, TGI, llama.cpp's server, SGLang or a hosted API.

Prompts go to the completions endpoint as the same token ids the in-process backends use (vLLM
and most servers take a list of ids as ``prompt``), so the model reads exactly the tokens trl
trained on; ``options["text_prompts"]`` sends the decoded text instead for servers that take text
only. Built on the official ``openai`` client (async): at most ``concurrency`` requests in flight,
a per-request timeout, and the client's retries with exponential backoff and jitter on 429, 5xx,
timeouts and dropped connections, honouring ``Retry-After``. A request that still fails ends the
run with the server's message; what was written is kept and a rerun resumes. The API key comes from
``OPENAI_API_KEY`` (or the variable ``api_key_env`` names) and is never logged or recorded.
"""

from __future__ import annotations

import asyncio
import logging
import os
from urllib.parse import urlsplit, urlunsplit

from revgen.errors import UserError
from revgen.generate.base import Completion, Generator, Sampling

log = logging.getLogger(__name__)


def public_url(url: str) -> str:
    """The base URL without credentials (for run.json, records and messages)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class OpenAIGenerator(Generator):
    name = "openai"

    def load(self) -> "OpenAIGenerator":
        from openai import AsyncOpenAI

        from revgen.models import load_tokenizer

        o = self.options
        self.base_url = o.get("base_url") or os.environ.get("OPENAI_BASE_URL")
        if not self.base_url:
            raise UserError("backend openai needs --base-url (e.g. http://127.0.0.1:8000/v1)")
        key_env = o.get("api_key_env") or "OPENAI_API_KEY"
        key = os.environ.get(key_env) or ("EMPTY" if "api_key_env" not in o else None)
        if key is None:
            raise UserError(f"backend openai: the environment variable {key_env} (--api-key-env) is not set")
        self.tokenizer = load_tokenizer(self.adapter or self.model)
        self.concurrency = int(o.get("concurrency", 16))
        self._client_args = {"base_url": self.base_url, "api_key": key, "timeout": float(o.get("timeout", 120)),
                             "max_retries": int(o.get("max_retries", 6))}  # fmt: skip
        AsyncOpenAI(**self._client_args)  # bad arguments fail here, not on the first batch
        self.served = o.get("served_model") or self._ask_served_model()
        self.text_prompts = bool(o.get("text_prompts", False))
        log.info("openai backend: %s at %s", self.served, public_url(self.base_url))
        return self

    def _ask_served_model(self) -> str:
        """No --served-model: the server's own list names it (one model served), else one clear error."""
        from openai import OpenAI

        try:
            names = [m.id for m in OpenAI(**{**self._client_args, "max_retries": 2}).models.list()]
        except Exception as exc:  # unreachable, 404 (no /models), a body that is not a list
            raise UserError(
                f"backend openai: --served-model not given and {public_url(self.base_url)}/models "
                f"could not say which model it serves ({type(exc).__name__}); pass --served-model"
            ) from None
        if len(names) != 1:
            raise UserError(f"backend openai: the server serves {names or 'no models'}; pass --served-model NAME")
        log.info("openai backend: the server serves %s", names[0])
        return names[0]

    def generate(self, prompts, sampling: Sampling, seeds):
        return asyncio.run(self._all(prompts, sampling, seeds))

    async def _all(self, prompts, sampling, seeds):
        from openai import AsyncOpenAI

        gate = asyncio.Semaphore(self.concurrency)
        async with AsyncOpenAI(**self._client_args) as client:  # one client per batch: loops don't share pools

            async def one(p, seed):
                async with gate:
                    return await self._one(client, p, sampling, seed)

            return await asyncio.gather(*(one(p, s) for p, s in zip(prompts, seeds)))

    async def _one(self, client, prompt: list[int], sampling: Sampling, seed: int) -> list[Completion]:
        import openai

        body = {"model": self.served, "prompt": self.tokenizer.decode(prompt) if self.text_prompts else prompt,
                "max_tokens": sampling.max_new_tokens, "temperature": sampling.temperature,
                "top_p": 1.0 if sampling.greedy else sampling.top_p, "n": sampling.n, "seed": seed}  # fmt: skip
        extra = {"ignore_eos": True} if sampling.ignore_eos else {}
        try:
            res = await client.completions.create(**body, extra_body=extra or None)
        except openai.APIStatusError as exc:
            raise UserError(f"server {public_url(self.base_url)} answered {exc.status_code} after retries: "
                            f"{str(exc.message)[:300]}") from None  # fmt: skip
        except openai.APIConnectionError as exc:
            raise UserError(f"server {public_url(self.base_url)} unreachable after retries: {exc}") from None
        except (openai.APIResponseValidationError, ValueError) as exc:  # 200 with a body that is not JSON
            raise UserError(f"server {public_url(self.base_url)} answered with a body that is not a completion: "
                            f"{str(exc)[:200]}") from None  # fmt: skip
        choices = getattr(res, "choices", None)
        if not isinstance(choices, list) or len(choices) != sampling.n:
            # a segment must end as a record or a dropped record, never vanish: an answer without its
            # n choices stops the run (everything written so far is kept; a rerun resumes)
            raise UserError(f"server {public_url(self.base_url)} answered {len(choices) if isinstance(choices, list) else 'no'}"
                            f" choices for a request asking for {sampling.n} (model {self.served}); nothing of that "
                            "batch was written")  # fmt: skip
        out = []
        for choice in sorted(choices, key=lambda c: c.index):
            text = choice.text or ""
            n_tokens = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            out.append(
                Completion(text, "length" if choice.finish_reason == "length" else "stop", n_tokens, len(prompt))
            )
        return out
