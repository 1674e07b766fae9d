"""The one prompt renderer shared by training, synthesis and evaluation.

A template is plain text holding ``{text}`` once and ending with ``{instruction}``. Everything
before ``{instruction}`` is the prompt (what the model reads), the instruction is the completion
(what it learns to write). Substitution is literal, so braces in user text are safe.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from revgen.errors import UserError

# The seed's Alpaca-style reverse template, byte for byte.
SEED_TEMPLATE = (
    "### Instruction:\n"
    "Use the Input below to create an instruction, which could have been used to generate the "
    "input using an LLM.\n"
    "\n"
    "### Input:\n"
    "{text}\n"
    "\n"
    "### Response:\n"
    "{instruction}"
)
TEMPLATES = {"seed": SEED_TEMPLATE}
TEMPLATE_FILE = "template.txt"


@dataclass(frozen=True)
class Template:
    text: str

    def __post_init__(self):
        if self.text.count("{text}") != 1 or not self.text.endswith("{instruction}"):
            raise UserError("a prompt template must contain {text} exactly once and end with {instruction}")
        if self.text.count("{instruction}") != 1:
            raise UserError("a prompt template must contain {instruction} exactly once")

    def prompt(self, text: str) -> str:
        """The prompt the model reads for ``text`` (ends right where the instruction starts)."""
        return self.text[: -len("{instruction}")].replace("{text}", text)

    def render(self, text: str, instruction: str) -> str:
        return self.prompt(text) + instruction

    def pair(self, text: str, instruction: str) -> dict:
        """A trl prompt-completion record: loss falls on the instruction only."""
        return {"prompt": self.prompt(text), "completion": instruction}

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / TEMPLATE_FILE
        path.write_text(self.text, encoding="utf-8")
        return path


def get_template(name_or_path: str) -> Template:
    """A built-in template by name (``seed``; ``auto`` is the seed's) or a template file."""
    if name_or_path in TEMPLATES or name_or_path == "auto":
        return Template(TEMPLATES.get(name_or_path, SEED_TEMPLATE))
    path = Path(name_or_path)
    if path.is_dir():
        path = path / TEMPLATE_FILE
    if not path.is_file():
        raise UserError(f"template {name_or_path!r} is neither a built-in ({', '.join(TEMPLATES)}) nor a file")
    return Template(path.read_text(encoding="utf-8"))


def encode_prompt(tokenizer, prompt: str) -> list[int]:
    """Token ids of a prompt at inference: exactly how trl tokenizes a prompt-completion prompt
    (plain ``tokenizer(text)``, special tokens on). Every generator backend goes through this."""
    return tokenizer(prompt)["input_ids"]


# Forward (instruction -> response) templates: Alpaca's, with and without an input.
ALPACA = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the "
    "request.\n\n### Instruction:\n{instruction}\n\n### Response:\n{response}"
)
ALPACA_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n"
    "### Input:\n{input}\n\n### Response:\n{response}"
)
FORWARD_TEMPLATE_FILE = "forward-template.json"


@dataclass(frozen=True)
class ForwardTemplate:
    """Renders (instruction, input) -> the prompt a forward model reads; the response is the completion.

    ``name`` is ``alpaca`` (default), ``chat`` (the model's own chat template, needs the tokenizer) or
    ``custom`` (``text`` holds ``{instruction}`` once, optionally ``{input}`` and ``{tag}``, and ends
    with ``{response}``).

    ``tag`` is Humpback's system-prompt tag (Li et al. 2023): a line that tells the model which kind of
    data a pair came from. Training renders each row with its source's tag; ``tag`` here is the one a
    trained model reads at inference (the seed data's). Chat templates get it as the system message,
    text templates at ``{tag}`` or, without one, as the first line.
    """

    name: str = "alpaca"
    text: str = ALPACA
    text_with_input: str = ALPACA_INPUT
    tag: str = ""

    def __post_init__(self):
        if self.name == "chat":
            return
        for t in (self.text, self.text_with_input):
            if t.count("{instruction}") != 1 or not t.endswith("{response}") or t.count("{response}") != 1:
                raise UserError("a forward template must contain {instruction} once and end with {response}")

    def prompt(self, instruction: str, input: str = "", tokenizer=None, tag: str | None = None) -> str:
        """The prompt for one row; ``tag`` None reads the template's own (inference) tag, "" none."""
        tag = self.tag if tag is None else tag
        if self.name == "chat":
            if tokenizer is None or not getattr(tokenizer, "chat_template", None):
                raise UserError("forward template 'chat' needs a tokenizer with a chat template")
            content = f"{instruction}\n\n{input}" if input else instruction
            system = [{"role": "system", "content": tag}] if tag else []
            return tokenizer.apply_chat_template(system + [{"role": "user", "content": content}], tokenize=False,
                                                 add_generation_prompt=True)  # fmt: skip
        text = self.text_with_input if input and "{input}" in self.text_with_input else self.text
        if input and "{input}" not in text:
            instruction = f"{instruction}\n\n{input}"
        values = {"instruction": instruction, "input": input, "tag": tag}  # one pass: braces in user text stay
        body = re.sub(r"\{(instruction|input|tag)\}", lambda m: values[m.group(1)], text[: -len("{response}")])
        return tag + "\n\n" + body if tag and "{tag}" not in text else body

    def pair(self, instruction: str, input: str, response: str, tokenizer=None, tag: str | None = None) -> dict:
        """A trl prompt-completion record: loss falls on the response (and trl's EOS) only."""
        return {"prompt": self.prompt(instruction, input, tokenizer, tag), "completion": response}

    def save(self, directory: str | Path) -> Path:
        import json

        path = Path(directory) / FORWARD_TEMPLATE_FILE
        path.write_text(json.dumps({"name": self.name, "text": self.text, "text_with_input": self.text_with_input,
                                    "tag": self.tag}, indent=2) + "\n", encoding="utf-8")  # fmt: skip
        return path


def get_forward_template(name_or_path: str = "alpaca") -> ForwardTemplate:
    """``alpaca``, ``chat``, a dir holding forward-template.json, or a text file (one template)."""
    import json

    if name_or_path in ("alpaca", "auto"):
        return ForwardTemplate()
    if name_or_path == "chat":
        return ForwardTemplate("chat", "", "")
    path = Path(name_or_path)
    if path.is_dir():
        path = path / FORWARD_TEMPLATE_FILE
        if not path.is_file():
            raise UserError(f"{path.parent} has no {FORWARD_TEMPLATE_FILE} (not a forward model from `revgen train`)")
        data = json.loads(path.read_text(encoding="utf-8"))
        return ForwardTemplate(data["name"], data["text"], data["text_with_input"], data.get("tag", ""))
    if not path.is_file():
        raise UserError(f"forward template {name_or_path!r} is neither alpaca, chat, a model dir nor a file")
    text = path.read_text(encoding="utf-8")
    return ForwardTemplate("custom", text, text)


def teacher_forced_ids(tokenizer, prompt: str, completion: str) -> tuple[list[int], int]:
    """``(input ids, prompt length)`` of prompt + completion + EOS exactly as trl 1.16 builds a
    prompt-completion example: ``tokenizer(prompt + completion + eos)``, the completion starting
    where it and ``tokenizer(prompt)`` diverge. Loss and NLL fall on ``ids[prompt_len:]``."""
    prompt_ids = tokenizer(prompt)["input_ids"]
    ids = tokenizer(prompt + completion + tokenizer.eos_token)["input_ids"]
    n = 0
    for a, b in zip(prompt_ids, ids):
        if a != b:
            break
        n += 1
    return ids, n
