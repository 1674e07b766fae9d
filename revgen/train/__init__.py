"""Training stage: the backward model (response -> instruction) and forward models, with trl + peft.

``trainer`` runs one job (plan, pairs, SFTTrainer, run.json, checkpoints and resume); ``pairs``
turns Dolly-style rows into reverse pairs; ``forward_data`` reads forward rows from every format
``revgen curate`` writes; ``throughput`` measures tokens/s and MFU per step.
"""

from revgen.exports import lazy

__all__ = ["TrainConfig", "LoraSettings", "train", "merge_adapter"]
__getattr__ = lazy(__name__, dict.fromkeys(__all__, "trainer"))
