"""Evaluation: how good the backward model's instructions are, and what they are worth to a forward model.

``backward`` (``revgen eval``): instructions recovered on held-out pairs, adapter vs base, best-of-N;
``forward`` (``revgen eval --task forward``): NLL, instruction use and ROUGE-L of forward models,
paired; ``mix``: questions vs requests, leading words, task types and their distance.
"""

from revgen.exports import lazy

__all__ = ["EvalConfig", "evaluate", "ForwardEvalConfig", "evaluate_forward"]
__getattr__ = lazy(__name__, {"EvalConfig": "backward", "evaluate": "backward", "ForwardEvalConfig": "forward",
                              "evaluate_forward": "forward"})  # fmt: skip
