"""A frozen linear's forward + input gradient, bf16 vs revgen's FP8 path (revgen/train/fp8.py), on one GPU.

    python bench/fp8_matmul.py --tokens 6144

Llama-2-7B's linear shapes (q/k/v/o 4096x4096, gate/up 11008x4096, down 4096x11008), bf16 weights, a
batch of --tokens rows; times forward + backward (quantisation included) after warm-up, and the relative
error of the output and the input gradient against bf16.
"""

from __future__ import annotations

import torch
from harness import emit, parser

SHAPES = {"attn": (4096, 4096), "gate_up": (11008, 4096), "down": (4096, 11008)}


def timed(fn, reps: int) -> float:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / reps


def main():
    from revgen.train import fp8

    ap = parser(__doc__)
    ap.add_argument("--tokens", type=int, default=6144)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--profile", action="store_true", help="print the FP8 step's kernels by GPU time")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench/fp8_matmul.py times FP8 matmuls on a CUDA GPU of capability 8.9+; none here")
    torch.manual_seed(0)
    for name, (out_f, in_f) in SHAPES.items():
        fp8._last.clear()
        lin = torch.nn.Linear(in_f, out_f, bias=False, device="cuda", dtype=torch.bfloat16).requires_grad_(False)
        x = torch.randn(args.tokens, in_f, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        g = torch.randn(args.tokens, out_f, device="cuda", dtype=torch.bfloat16)

        def step():
            fp8._last.clear()  # in a model only q/k/v (gate/up) share an input
            y = lin(x)
            y.backward(g)
            return y

        ref_y = step().detach()
        ref_g, x.grad = x.grad.clone(), None
        bf16_ms = timed(step, args.reps)
        fp8.patch(torch.nn.Sequential(lin))
        x.grad = None
        y = step().detach()
        err_y = ((y.float() - ref_y.float()).norm() / ref_y.float().norm()).item()
        err_g = ((x.grad.float() - ref_g.float()).norm() / ref_g.float().norm()).item()
        fp8_ms = timed(step, args.reps)
        a8, sa = fp8._quant_rows(x.detach())
        b8, sb = fp8._quant_weight(lin, transposed=False)
        ceiling_ms = timed(
            lambda: [
                torch._scaled_mm(a8, b8.t(), scale_a=sa, scale_b=sb[None, :], out_dtype=torch.bfloat16)
                for _ in range(2)
            ],
            args.reps,
        )
        quant_ms = timed(lambda: fp8._quant_rows(x.detach()), args.reps)
        weight_ms = timed(lambda: fp8._quant_weight(lin, transposed=False), args.reps)
        weight_t_ms = timed(lambda: fp8._quant_weight(lin, transposed=True), args.reps)
        if args.profile:
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                for _ in range(5):
                    step()
                torch.cuda.synchronize()
            print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=12), flush=True)
        emit(
            {
                "shape": name,
                "tokens": args.tokens,
                "bf16_ms": round(bf16_ms, 3),
                "fp8_ms": round(fp8_ms, 3),
                "speedup": round(bf16_ms / fp8_ms, 2),
                "two_fp8_matmuls_ms": round(ceiling_ms, 3),
                "quant_input_ms": round(quant_ms, 3),
                "weight_ms": round(weight_ms, 3),
                "weight_transposed_ms": round(weight_t_ms, 3),
                "rel_err_out": round(err_y, 4),
                "rel_err_grad": round(err_g, 4),
            }
        )


if __name__ == "__main__":
    main()
