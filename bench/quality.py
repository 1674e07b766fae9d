"""The quality number future changes must move: backward-model instruction recovery on held-out Dolly.

    python bench/quality.py                       # train recipes/smollm2-135m-cpu.yaml, then eval
    python bench/quality.py --adapter runs/backward   # evaluate an existing run (its heldout.jsonl)

Trains the CPU recipe (seeded hold-out of 16 rows, see the recipe), then runs `revgen eval` on the
held-out pairs for the adapter and for the base model with the same template, greedy decoding.
"""

from __future__ import annotations

import sys

from harness import ROOT, parser


def main():
    from revgen import config as cfgmod
    from revgen.evaluate.backward import EvalConfig, evaluate, table
    from revgen.train.trainer import TrainConfig, train

    ap = parser(__doc__)
    ap.add_argument("--recipe", default=str(ROOT / "recipes" / "smollm2-135m-cpu.yaml"))
    ap.add_argument("--adapter", help="skip training; evaluate this run directory")
    ap.add_argument("--output-dir", default="runs/quality")
    args = ap.parse_args()
    adapter = args.adapter
    if not adapter:
        cfg = cfgmod.load(TrainConfig, "train", args.recipe, {"output_dir": f"{args.output_dir}/backward"})
        adapter = train(cfg)["config"]["output_dir"]
    info = evaluate(EvalConfig(data=f"{adapter}/heldout.jsonl", adapter=adapter, output_dir=f"{args.output_dir}/eval"))
    print(table(info))
    for name, res in info["systems"].items():
        print(name, {c: v["rouge_l"] for c, v in res["per_category"].items()}, file=sys.stderr)


if __name__ == "__main__":
    main()
