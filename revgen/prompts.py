"""The one prompt renderer shared by training, synthesis and evaluation.

A template is plain text holding ``{text}`` once and ending with ``{instruction}``. Everything
before ``{instruction}`` is the prompt (what the model reads), the instruction is the completion
(what it learns to write). Substitution is literal, so braces in user text are safe.
"""

from __future__ import annotations

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
            raise UserError(
                "a prompt template must contain {text} exactly once and end with {instruction}"
            )
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
    """A built-in template by name (``seed``) or a template file."""
    if name_or_path in TEMPLATES:
        return Template(TEMPLATES[name_or_path])
    path = Path(name_or_path)
    if path.is_dir():
        path = path / TEMPLATE_FILE
    if not path.is_file():
        raise UserError(
            f"template {name_or_path!r} is neither a built-in ({', '.join(TEMPLATES)}) nor a file"
        )
    return Template(path.read_text(encoding="utf-8"))


def encode_prompt(tokenizer, prompt: str) -> list[int]:
    """Token ids of a prompt at inference: exactly how trl tokenizes a prompt-completion prompt
    (plain ``tokenizer(text)``, special tokens on). Every generator backend goes through this."""
    return tokenizer(prompt)["input_ids"]
