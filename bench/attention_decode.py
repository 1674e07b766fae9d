"""One decode step of attention over a padded KV cache: which kernel moves the bytes fastest?

    python bench/attention_decode.py            # Llama-2-7B (MHA) and Llama-3-8B (GQA) shapes

Decode attention reads every cached key and value once, so its floor is bytes / bandwidth. At
batch 384 with a 384-slot static cache (256 prompt + 128 new) that is 1.2 GB per layer for a
Llama-2-7B: 77 GB per generated token across 32 layers, more than five times the weights. The
kernel that reads the cache nearest the copy bandwidth decides generation throughput.
Variants (all with the left-padding mask the generator needs, except ``sdpa-nomask``):
- gqa-bmm: revgen's grouped matmul decode (attention.py), eager and compiled
- sdpa: torch SDPA with a boolean mask (default dispatch, then each backend forced)
- sdpa-nomask: flash without a mask, a speed reference only (wrong for padded rows)
"""

from __future__ import annotations

from harness import emit


def main():
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend
    from triton.testing import do_bench

    from revgen.generate.attention import _decode

    dev, dt = "cuda", torch.bfloat16
    copy_src = torch.empty(2**30, dtype=torch.uint8, device=dev)
    copy_dst = torch.empty_like(copy_src)
    ms = do_bench(lambda: copy_dst.copy_(copy_src), warmup=50, rep=300, return_mode="median")
    copy_gbs = 2 * copy_src.numel() / ms / 1e6
    print(f"copy bandwidth (read+write): {copy_gbs:,.0f} GB/s", flush=True)
    rows = []
    for label, b, h, kvh, length, d in [("llama2-7b", 384, 32, 32, 384, 128), ("llama2-7b", 128, 32, 32, 384, 128),
                                       ("llama3-8b-gqa", 384, 32, 8, 384, 128)]:  # fmt: skip
        g = torch.Generator(device=dev).manual_seed(0)
        q = torch.randn(b, h, 1, d, device=dev, dtype=dt, generator=g)
        k = torch.randn(b, kvh, length, d, device=dev, dtype=dt, generator=g)
        v = torch.randn(b, kvh, length, d, device=dev, dtype=dt, generator=g)
        fill = torch.randint(200, length, (b,), device=dev, generator=g)  # valid cache slots per row
        pad = torch.randint(0, 40, (b,), device=dev, generator=g)  # left padding per row
        pos = torch.arange(length, device=dev)
        mask = ((pos[None] >= pad[:, None]) & (pos[None] < fill[:, None]))[:, None, None, :]  # (b,1,1,L) bool
        groups = h // kvh
        ref = _reference(q, k, v, mask, groups)
        nbytes = 2 * k.numel() * k.element_size()
        compiled = torch.compile(_decode, dynamic=False)
        cands = {
            "gqa-bmm eager": lambda: _decode(q, k, v, mask, groups, None),
            "gqa-bmm compiled": lambda: compiled(q, k, v, mask, groups, None),
            "sdpa (default)": lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=groups > 1),
        }
        for name, be in [("efficient", SDPBackend.EFFICIENT_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION),
                         ("math", SDPBackend.MATH)]:  # fmt: skip
            cands[f"sdpa {name}"] = lambda be=be: _forced(be, q, k, v, mask, groups)
        cands["sdpa-nomask flash"] = lambda: _forced(SDPBackend.FLASH_ATTENTION, q, k, v, None, groups)
        for name, fn in cands.items():
            try:
                out = fn()
                if out.shape[1] == 1:  # gqa-bmm returns (b, 1, h, d)
                    out = out.transpose(1, 2)
                err = ((out.double() - ref).norm() / ref.norm()).item() if "nomask" not in name else float("nan")
                t = do_bench(fn, warmup=50, rep=300, return_mode="median")
                row = {"shape": f"{label} b{b} h{h}/{kvh} L{length}", "variant": name, "ms": round(t, 4),
                       "GB/s": round(nbytes / t / 1e6), "of_copy": round(nbytes / t / 1e6 / copy_gbs, 2),
                       "rel_err": float(f"{err:.2e}")}  # fmt: skip
            except Exception as exc:
                row = {"shape": f"{label} b{b}", "variant": name, "error": f"{type(exc).__name__}: {exc}"[:200]}
            rows.append(row)
            emit(row)
    for r in rows:
        print(f"{r['shape']:<34}{r['variant']:<20}" + (f"{r['ms']:>9.3f} ms {r['GB/s']:>7} GB/s {r['of_copy']:>5}x copy "
              f"err {r['rel_err']}" if "ms" in r else r["error"]))  # fmt: skip


def _forced(backend, q, k, v, mask, groups):
    import torch.nn.functional as F
    from torch.nn.attention import sdpa_kernel

    with sdpa_kernel(backend):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=groups > 1)


def _reference(q, k, v, mask, groups):
    import torch

    k, v = (t.double().repeat_interleave(groups, dim=1) for t in (k, v))
    s = q.double() @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    s = s.masked_fill(~mask, float("-inf"))
    return torch.softmax(s, -1) @ v


if __name__ == "__main__":
    main()
