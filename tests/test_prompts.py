import pytest

from revgen.errors import UserError
from revgen.prompts import SEED_TEMPLATE, Template, get_template

# The seed's template, written out independently of revgen/prompts.py.
SEED_BYTES = (
    b"### Instruction:\nUse the Input below to create an instruction, which could have been used to "
    b"generate the input using an LLM.\n\n### Input:\n{text}\n\n### Response:\n{instruction}"
)


def test_seed_template_is_byte_exact():
    assert SEED_TEMPLATE.encode() == SEED_BYTES
    t = get_template("seed")
    assert t.render("Paris is big.", "Describe Paris.").encode() == SEED_BYTES.replace(
        b"{text}", b"Paris is big."
    ).replace(b"{instruction}", b"Describe Paris.")


def test_prompt_completion_split_at_response_header():
    pair = get_template("seed").pair("Some text.", "Write text.")
    assert pair["prompt"].endswith("### Input:\nSome text.\n\n### Response:\n")
    assert pair["completion"] == "Write text."


def test_braces_in_text_are_literal():
    t = get_template("seed")
    assert "{x} and {instruction}" in t.prompt("{x} and {instruction}")


@pytest.mark.parametrize("bad", ["no slots", "{text} but ends early", "{instruction} {text} {instruction}"])
def test_invalid_templates_are_rejected(bad):
    with pytest.raises(UserError):
        Template(bad)


def test_template_from_file_and_dir(tmp_path):
    Template("Q: {text}\nA: {instruction}").save(tmp_path)
    assert get_template(str(tmp_path)).prompt("x") == "Q: x\nA: "
    assert get_template(str(tmp_path / "template.txt")).prompt("y") == "Q: y\nA: "
    with pytest.raises(UserError, match="neither a built-in"):
        get_template(str(tmp_path / "missing.txt"))
