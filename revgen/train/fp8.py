"""FP8 matmuls for the frozen base weights of a LoRA run (``train.fp8: true``).

In (Q)LoRA the base weights never train, so each of their matmuls is a forward ``x @ W.T`` and an input
gradient ``g @ W``, both in bf16 after bitsandbytes dequantises ``W``, and with gradient checkpointing the
forward runs twice. Here both run as FP8 e4m3 scaled matmuls (``torch._scaled_mm``) with row-wise scales, the
recipe torchao calls "rowwise": ``x`` and ``g`` per token, ``W`` per output row in the forward and per input
column in the backward. Nothing is saved for the backward but the module (bitsandbytes also keeps the
input). The LoRA adapters, norms, attention and the LM head stay in their own dtype.

On a GPU this needs FP8 tensor cores (compute capability 8.9+: Ada, Hopper, Blackwell). On a CPU it runs
(torch emulates the FP8 matmul: correct, not faster), which is how the tests check it.
"""

from __future__ import annotations

import logging
import types

import torch

log = logging.getLogger(__name__)

E4M3 = torch.float8_e4m3fn
E4M3_MAX = 448.0
ALIGN = 16  # cuBLAS FP8 wants every matmul dimension a multiple of 16


def _kernels():
    """Two Triton kernels: an activation's row-wise quantisation, and a frozen weight's cast with scales known in
    advance (optionally transposed on the way, which the backward's column-major operand needs)."""
    import triton
    import triton.language as tl

    @triton.jit
    def rows_kernel(x_ptr, q_ptr, s_ptr, n_rows, n_cols, stride_x, stride_q, BLOCK: tl.constexpr):
        row = tl.program_id(0)  # rows past n_rows are the matmul's padding: zeros, scale 1
        x_row, q_row = x_ptr + row.to(tl.int64) * stride_x, q_ptr + row.to(tl.int64) * stride_q
        live = row < n_rows
        n_live = tl.where(live, n_cols, 0)
        amax = tl.zeros((BLOCK,), dtype=tl.float32)
        for off in range(0, n_cols, BLOCK):
            cols = off + tl.arange(0, BLOCK)
            v = tl.load(x_row + cols, mask=cols < n_live, other=0.0).to(tl.float32)
            amax = tl.maximum(amax, tl.abs(v))
        top = tl.max(amax, axis=0)
        scale = tl.where(live, tl.maximum(top, 1e-12) / 448.0, 1.0)
        for off in range(0, n_cols, BLOCK):  # the row again, from cache
            cols = off + tl.arange(0, BLOCK)
            v = tl.load(x_row + cols, mask=cols < n_live, other=0.0).to(tl.float32)
            tl.store(q_row + cols, tl.clamp(v / scale, -448.0, 448.0).to(tl.float8e4nv), mask=cols < n_cols)
        tl.store(s_ptr + row, scale)

    @triton.jit
    def cast_kernel(w_ptr, s_ptr, o_ptr, n_rows, n_cols, PER_ROW: tl.constexpr, TRANS: tl.constexpr,
                    BR: tl.constexpr, BC: tl.constexpr):  # fmt: skip
        rows = tl.program_id(0) * BR + tl.arange(0, BR)
        cols = tl.program_id(1) * BC + tl.arange(0, BC)
        mask = (rows[:, None] < n_rows) & (cols[None, :] < n_cols)
        w = tl.load(w_ptr + rows[:, None].to(tl.int64) * n_cols + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        if PER_ROW:
            s = tl.load(s_ptr + rows, mask=rows < n_rows, other=1.0)[:, None]
        else:
            s = tl.load(s_ptr + cols, mask=cols < n_cols, other=1.0)[None, :]
        q = tl.clamp(w / s, -448.0, 448.0).to(tl.float8e4nv)
        if TRANS:  # out is [n_cols, n_rows] row-major
            tl.store(o_ptr + cols[:, None].to(tl.int64) * n_rows + rows[None, :], tl.trans(q), mask=tl.trans(mask))
        else:
            tl.store(o_ptr + rows[:, None].to(tl.int64) * n_cols + cols[None, :], q, mask=mask)

    return rows_kernel, cast_kernel


_triton = {}


def _kernel(name: str):
    if not _triton:
        _triton["rows"], _triton["cast"] = _kernels()
    return _triton[name]


def _to_e4m3(t: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The torch-ops cast (CPU): ``t / scale`` saturated to e4m3's range."""
    return (t.float() / scale).clamp(-E4M3_MAX, E4M3_MAX).to(E4M3)


def _quant_rows(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """An activation [M, K] as e4m3 with one float32 scale per row (amax / 448); on CUDA the rows are padded to a
    multiple of 16 (zeros) for the matmul, whose result the caller cuts back to M rows."""
    if t.device.type != "cuda":
        scale = t.abs().amax(dim=1, keepdim=True).float().clamp(min=1e-12) / E4M3_MAX
        return _to_e4m3(t, scale), scale
    t = t.contiguous()
    m, k = t.shape
    padded = m + (-m % ALIGN)
    q = torch.empty((padded, k), dtype=E4M3, device=t.device)
    s = torch.empty((padded, 1), dtype=torch.float32, device=t.device)
    _kernel("rows")[(padded,)](t, q, s, m, k, t.stride(0), q.stride(0), BLOCK=min(4096, 1 << (k - 1).bit_length()),
                              num_warps=8)  # fmt: skip
    return q, s


def _weight_scales(module, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A frozen weight's per-row and per-column scales, measured once and kept on the module (out + in floats)."""
    scales = getattr(module, "_fp8_scales", None)
    if scales is None:
        a = w.abs()
        scales = (a.amax(dim=1).float().clamp(min=1e-12) / E4M3_MAX, a.amax(dim=0).float().clamp(min=1e-12) / E4M3_MAX)
        module._fp8_scales = scales
    return scales


def _quant_weight(module, transposed: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """W [out, in] as the matmul's column-major e4m3 operand: for ``x @ W.T`` W itself scaled per output row
    (W.T is then column-major); for ``g @ W`` W.T row-major scaled per input column (W is then column-major)."""
    w = _weight(module)
    by_row, by_col = _weight_scales(module, w)
    scale = by_col if transposed else by_row
    if w.device.type != "cuda":
        q = _to_e4m3(w, by_col[None, :] if transposed else by_row[:, None])
        return (q.t().contiguous() if transposed else q), scale
    import triton

    w = w.contiguous()
    rows, cols = w.shape
    q = torch.empty((cols, rows) if transposed else (rows, cols), dtype=E4M3, device=w.device)
    grid = (triton.cdiv(rows, 64), triton.cdiv(cols, 64))
    _kernel("cast")[grid](w, scale, q, rows, cols, PER_ROW=not transposed, TRANS=transposed, BR=64, BC=64, num_warps=4)
    return q, scale


_last = {}  # q, k and v (gate and up) read the same input: quantise it once


def _quant_input(x: torch.Tensor):
    hit = _last.get("x")
    if hit is not None and hit[0] is x and hit[1] == x._version:
        return hit[2], hit[3]
    q, s = _quant_rows(x.reshape(-1, x.shape[-1]))
    _last["x"] = (x, x._version, q, s)
    return q, s


def _mm(a8, sa, b8, sb, m: int, out_dtype) -> torch.Tensor:
    """``a8 @ b8`` in FP8: ``a8`` [M', K] row-major with scales [M', 1], ``b8`` [K, N] column-major with [1, N];
    the first ``m`` rows (M' >= m is padding)."""
    out = torch._scaled_mm(a8, b8, scale_a=sa, scale_b=sb, out_dtype=out_dtype)
    return out[:m] if out.shape[0] != m else out


class _FrozenLinearFp8(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, module):
        ctx.module = module
        w8, sw = _quant_weight(module, transposed=False)  # [out, in] row-major: w8.t() is column-major
        x8, sx = _quant_input(x)
        y = _mm(x8, sx, w8.t(), sw[None, :], x.numel() // x.shape[-1], x.dtype)
        return y.reshape(*x.shape[:-1], w8.shape[0])

    @staticmethod
    def backward(ctx, grad):
        wt8, sw = _quant_weight(ctx.module, transposed=True)  # [in, out] row-major: wt8.t() is W column-major
        g8, sg = _quant_rows(grad.reshape(-1, grad.shape[-1]))
        gx = _mm(g8, sg, wt8.t(), sw[None, :], grad.numel() // grad.shape[-1], grad.dtype)
        return gx.reshape(*grad.shape[:-1], wt8.shape[0]), None


def _weight(module) -> torch.Tensor:
    w = module.weight
    state = getattr(w, "quant_state", None)
    if state is not None:  # bitsandbytes 4-bit: dequantise, as its own matmul does
        import bitsandbytes.functional as bnbf

        return bnbf.dequantize_4bit(w.data, state)
    return w


def _forward(self, x, *args, **kwargs):
    y = _FrozenLinearFp8.apply(x, self)
    return y + self.bias.to(y.dtype) if self.bias is not None else y


def _frozen_linears(model):
    try:
        from bitsandbytes.nn import Linear4bit
    except ImportError:
        Linear4bit = ()
    for name, module in model.named_modules():
        if name.endswith("lm_head") or not isinstance(module, (torch.nn.Linear, Linear4bit)):
            continue
        if module.weight.requires_grad or "lora_" in name:  # adapters train in their own dtype
            continue
        if module.in_features % ALIGN or module.out_features % ALIGN:  # FP8 matmuls need both a multiple of 16
            continue
        yield name, module


def check_device(device: str) -> None:
    """Refuse a GPU without FP8 tensor cores (one clear error, before the model loads)."""
    from revgen import runinfo
    from revgen.errors import UserError

    if device == "cuda" and not runinfo.fp8_available():
        name = torch.cuda.get_device_name()
        raise UserError(f"fp8: true needs FP8 tensor cores (compute capability 8.9+: Ada, Hopper); {name} has "
                        f"{torch.cuda.get_device_capability()}: set fp8: false")  # fmt: skip
    if device == "cpu":
        log.warning("fp8 on a CPU: torch emulates the FP8 matmuls (same maths, slower than without fp8)")


def patch(model) -> int:
    """Route every frozen linear of ``model`` (LoRA base layers, 4-bit or not; not the LM head) through FP8
    matmuls. Returns how many were patched."""
    n = 0
    for _, module in _frozen_linears(model):
        module.forward = types.MethodType(_forward, module)
        n += 1
    log.info("fp8: %d frozen linear layers run their matmuls in FP8 (e4m3, row-wise scales)", n)
    return n
