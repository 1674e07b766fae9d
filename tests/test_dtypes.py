"""The compute dtype comes from what the CPU does natively, an explicit one wins, and runs record it."""

import json
import os
import subprocess
import sys

import pytest

from revgen import dtypes
from revgen.errors import UserError


def test_auto_follows_the_cpus_native_bf16_and_explicit_wins():
    cpu = dtypes.cpu_info()
    assert cpu["isa"] and isinstance(cpu["native_bf16"], bool)
    native = {"avx512_bf16", "amx_bf16", "bf16"} & set(cpu["flags"])
    assert cpu["native_bf16"] == bool(native) or cpu["isa"] in ("AVX2", "DEFAULT")
    auto = dtypes.choice("auto")
    assert auto["dtype"] == ("bfloat16" if cpu["native_bf16"] else "float32") and auto["isa"] == cpu["isa"]
    assert dtypes.resolve("auto", stage="train") == dtypes.resolve("auto", stage="score") == "float32"
    explicit = dtypes.choice("float16")
    assert explicit["dtype"] == "float16" and explicit["why"] == "set explicitly" and explicit["device"] == "cpu"
    with pytest.raises(UserError, match="dtype must be one of auto, float32, bfloat16, float16, got 'fp8'"):
        dtypes.resolve("fp8")


def test_a_cpu_without_native_bf16_computes_in_float32():
    """torch and oneDNN kept to AVX2 (what an AVX2-only CPU runs): bf16 would be emulated, so float32."""
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    res = subprocess.run([sys.executable, "-m", "revgen", "env", "--json"], capture_output=True, text=True,
                         env=env, timeout=300)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    info = json.loads(res.stdout)
    assert info["cpu_isa"] == "AVX2" and info["cpu_native_bf16"] is False and info["auto_dtype"] == "float32"
