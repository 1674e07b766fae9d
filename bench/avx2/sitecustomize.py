"""Run any revgen command as an AVX2-only CPU would (benchmarks only; never on in the product).

    PYTHONPATH=bench/avx2 ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \
        .venv/bin/revgen run recipes/smollm2-135m-cpu.yaml

The three variables keep torch's kernels, oneDNN and MKL on AVX2 (no AVX-512, no AVX512-BF16/AMX);
this file makes torch's CPU probes say so too, so vLLM loads its AVX2 kernel library and revgen's
dtype choice sees no native bf16. The clocks and caches stay this machine's: it shows the code
paths an AVX2 machine takes and what the dtype costs there, not a real AVX2 machine's speed.
"""

import os

if os.environ.get("ATEN_CPU_CAPABILITY", "").lower() == "avx2":
    try:
        import torch

        for probe in (
            "_is_avx512_supported",
            "_is_avx512_bf16_supported",
            "_is_amx_tile_supported",
            "_is_amx_fp16_supported",
            "_is_avx512_vnni_supported",
        ):
            if hasattr(torch.cpu, probe):
                setattr(torch.cpu, probe, lambda: False)
        caps = getattr(torch.cpu, "get_capabilities", None)
        if caps:
            real = caps()
            torch.cpu.get_capabilities = lambda: {
                k: (False if k.startswith(("avx512", "amx", "avx10")) else v) for k, v in real.items()
            }
    except ImportError:
        pass
