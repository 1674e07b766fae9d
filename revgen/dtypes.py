"""The compute dtype every stage loads models in, chosen from what the hardware does natively.

bf16 is fast only where the hardware computes it: a CUDA GPU that supports it, or a CPU with
AVX512-BF16 or AMX (x86) or the BF16 extension (Arm). Elsewhere (AVX2-only CPUs: most laptops and
many cloud VMs) torch and vLLM emulate it and run 2-3x slower than float32, so ``auto`` means
float32 there. An explicit dtype (``--dtype`` or a recipe's ``dtype:``) always wins. The choice and
the capability it came from are recorded in run.json (:func:`choice`).

The capability is the one torch will use, not only the silicon: ``ATEN_CPU_CAPABILITY=avx2`` and
``ONEDNN_MAX_CPU_ISA=AVX2`` (which keep torch off the bf16 instructions) count as no native bf16.
"""

from __future__ import annotations

import platform
from functools import lru_cache

DTYPES = ("auto", "float32", "bfloat16", "float16")  # config.CHOICES checks every recipe's dtype against these


@lru_cache(maxsize=1)
def cpu_info() -> dict:
    """The CPU as torch sees it: name, the kernel ISA torch dispatches to, native bf16 or not."""
    import torch

    isa = torch.backends.cpu.get_cpu_capability()  # "AVX512", "AVX2", "DEFAULT", "SVE256", ...
    try:
        caps = torch.cpu.get_capabilities()
    except (AttributeError, RuntimeError):  # older torch or a non-x86 build
        caps = {}
    flags = [f for f in ("avx2", "avx512_f", "avx512_bf16", "amx_bf16") if caps.get(f)]
    if platform.machine().lower() in ("aarch64", "arm64"):
        hw = _arm_bf16()
        flags += ["bf16"] if hw else []
    else:
        hw = bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))
    try:
        onednn = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        onednn = hw
    native = hw and onednn and isa not in ("DEFAULT", "AVX2", "NO AVX")
    return {"cpu": caps.get("cpu_name") or platform.processor() or platform.machine(), "isa": isa,
            "flags": flags, "native_bf16": native, "cores": caps.get("num_physical_cores")}  # fmt: skip


def _arm_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as fh:
            return any(line.startswith("Features") and " bf16" in line for line in fh)
    except OSError:
        return False


def _cuda() -> tuple[bool, bool]:
    import torch

    cuda = torch.cuda.is_available()
    return cuda, cuda and torch.cuda.is_bf16_supported()


def resolve(requested: str | None = "auto", *, stage: str = "inference") -> str:
    """A concrete dtype name. On a CPU, ``stage="train"`` and ``stage="score"`` stay in float32 even
    where bf16 is native: LoRA training on CPU measured fastest in float32, and teacher-forced
    log-likelihoods (scores, NLL) are compared across models and runs, so they keep full precision."""
    return choice(requested, stage=stage)["dtype"]


def choice(requested: str | None = "auto", *, stage: str = "inference") -> dict:
    """The dtype with the reason, for logs and run.json."""
    requested = requested or "auto"
    if requested not in DTYPES:
        from revgen.errors import UserError

        raise UserError(f"dtype must be one of {', '.join(DTYPES)}, got {requested!r}")
    cuda, cuda_bf16 = _cuda()
    if requested != "auto":
        return {"dtype": requested, "requested": requested, "why": "set explicitly", **_where(cuda)}
    if cuda:
        dtype = "bfloat16" if cuda_bf16 else "float16"
        why = "GPU with bf16" if cuda_bf16 else "GPU without bf16"
    elif stage in ("train", "score"):
        dtype, why = "float32", f"CPU {stage} stages run in float32"
    elif cpu_info()["native_bf16"]:
        dtype, why = "bfloat16", "CPU with native bf16 (AVX512-BF16/AMX/Arm BF16)"
    else:
        dtype, why = "float32", "CPU without native bf16: bf16 would be emulated (2-3x slower)"
    return {"dtype": dtype, "requested": "auto", "why": why, **_where(cuda)}


def _where(cuda: bool) -> dict:
    if cuda:
        import torch

        return {"device": "cuda", "gpu": torch.cuda.get_device_name()}
    return {"device": "cpu", **cpu_info()}
