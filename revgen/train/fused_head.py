"""trl's fused LM head on a CPU: score only the positions that carry a label.

trl 1.16 projects the LM head in tiles and, where Triton runs the fold (CUDA, XPU), only over positions whose
next-token label is not -100. Elsewhere it scores every position, so that compiled devices (Neuron) see fixed
tile shapes. An eager CPU gains nothing from that and pays the whole (positions x 49k vocabulary) projection and
its softmax folds, forward and backward, for prompt and padding positions the loss masks anyway; in the backward
task the prompt (the response) is most of each row. Scoring only labelled positions gives the same losses and
gradients (tests/train/test_fused_head.py) and cut the demo's training time by a third on an AVX2 CPU
(bench/RESULTS.md).
"""

import contextlib
import logging

log = logging.getLogger(__name__)


@contextlib.contextmanager
def labelled_positions_only(device: str):
    """While open, trl's fused head on a CPU scores labelled positions only. Yields what the head scores
    ("labelled" or "trl default": CUDA is already labelled-only through Triton), for run.json."""
    if device != "cpu":
        yield "trl default"
        return
    try:
        import trl.trainer.utils as trl_utils

        original = trl_utils._use_triton
    except (ImportError, AttributeError):  # a trl without this switch: its default, said once
        log.info("this trl has no fused-head switch; the LM head scores every position")
        yield "trl default"
        return
    trl_utils._use_triton = lambda dev: dev.type == "cpu" or original(dev)
    try:
        yield "labelled"
    finally:
        trl_utils._use_triton = original
