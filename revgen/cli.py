"""The ``revgen`` command line: parse flags, load config, call one library function."""

from __future__ import annotations

import json
import logging
import sys

import click

from revgen import __version__
from revgen import config as cfgmod

recipe_opt = click.option("--recipe", type=click.Path(dir_okay=False), help="Recipe YAML file.")
set_opt = click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                       help="Override any config key, e.g. --set lora.r=8 --set trainer.max_steps=10.")  # fmt: skip


license_opt = click.option("--license", "license_", help="Dataset license (default: the corpus card's `license`).")
language_opt = click.option("--language", "languages", multiple=True, help="ISO 639-1 code (repeatable).")
push_opt = click.option("--push-to-hub", "push_to", metavar="REPO_ID", help="Then push the output to this Hub dataset.")
private_opt = click.option("--private", is_flag=True, help="Create the Hub repo private.")


def _push(path, repo_id, private=False, license_=None, languages=()) -> None:
    from revgen.publish.hub import push

    info = push(path, repo_id, private=private, license=license_, language=list(languages) or None)
    click.echo(f"pushed {info['rows']} rows: {info['url']}", err=True)


def setup_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose >= 0 else logging.WARNING
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from revgen.redact import LogFilter

    for handler in logging.getLogger().handlers:  # every line printed, the HTTP client's request log included
        if not any(isinstance(f, LogFilter) for f in handler.filters):
            handler.addFilter(LogFilter())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="revgen")
@click.option("-v", "--verbose", count=True, help="More log output (stderr).")
@click.option("-q", "--quiet", is_flag=True, help="Warnings and errors only.")
def cli(verbose: int, quiet: bool) -> None:
    """Reverse-instruction synthesis: train a backward model, synthesize instruction data."""
    setup_logging(-1 if quiet else verbose)


@cli.command(epilog="\b\nExample:\n  revgen env --json")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def env(as_json: bool) -> None:
    """Versions, device, CUDA, bf16 / 4-bit / flash-attn availability."""
    from revgen.runinfo import environment

    info = environment()
    if as_json:
        click.echo(json.dumps(info, indent=2))
    else:
        for k, v in info.items():
            click.echo(f"{k:>16}: {v}")


@cli.command(
    epilog="\b\nExample:\n  revgen train -o runs/backward --max-steps 30\n  revgen train --recipe recipes/seed-llama2-7b-qlora.yaml"
)
@recipe_opt
@click.option(
    "--task",
    type=click.Choice(["backward", "forward"]),
    help="backward: response -> instruction (default); forward: instruction -> response.",
)
@click.option("--model", help="Base model: 'smollm2-135m' (default), a local HF folder or a Hub id.")
@click.option(
    "--data",
    "data",
    multiple=True,
    help="'dolly-sample' (bundled), a .jsonl/.json/.parquet file, a curate dir or a Hub id (repeatable).",
)
@click.option(
    "--data-cap",
    "data_caps",
    multiple=True,
    type=click.IntRange(min=1),
    help="Rows to take from the --data at the same position (repeatable).",
)
@click.option(
    "--data-tag",
    "data_tags",
    multiple=True,
    help="Forward: the system-prompt tag of the --data at the same position: seed, augmented or its own text "
    "(Humpback's tagging; the first --data's tag is read at inference).",
)
@click.option("-o", "--output-dir", help="Where the adapter and run.json go.")
@click.option("--context", type=click.Choice(["ignore", "append", "drop"]), help="Dolly context handling.")
@click.option("--category", "categories", multiple=True, help="Keep only this Dolly category (repeatable).")
@click.option(
    "--task-types/--no-task-types",
    default=None,
    help="Backward: learn '[category] instruction' so synthesize can steer the task type (--task-mix).",
)
@click.option("--max-length", type=int, help="Max tokens of prompt + instruction + EOS.")
@click.option("--max-rows", type=int, help="Use only the first N pairs.")
@click.option("--max-steps", type=int, help="Stop after N optimizer steps (trainer.max_steps).")
@click.option("--eval-holdout", type=float, help="Hold out N rows (or a fraction < 1) for eval loss.")
@click.option("--load-in-4bit", type=click.Choice(["auto", "true", "false"]), help="QLoRA 4-bit base.")
@click.option("--packing/--no-packing", default=None)
@click.option("--merge/--no-merge", default=None, help="Also write a merged bf16 model (OUTPUT_DIR/merged).")
@click.option("--seed", type=int)
@click.option("--threads", type=int, help="torch CPU threads.")
@click.option("--overwrite", is_flag=True, default=None, help="Replace a trained model already in the output dir.")
@set_opt
def train(recipe, sets, categories, max_steps, load_in_4bit, data, data_caps, data_tags, **flags) -> None:
    """Fine-tune the backward model (response -> instruction), or a forward model, with trl + LoRA/QLoRA."""
    from revgen.api import train_config
    from revgen.train.trainer import train as run

    for name, given in (("--data-cap", data_caps), ("--data-tag", data_tags)):
        if len(given) > len(data):
            raise click.UsageError(f"{name} needs a --data at the same position")
    if data:
        caps = list(data_caps) + [None] * (len(data) - len(data_caps))
        tags = list(data_tags) + [None] * (len(data) - len(data_tags))
        specs = [{"source": d, **({"max_rows": c} if c else {}), **({"tag": t} if t is not None else {})}
                 for d, c, t in zip(data, caps, tags)]  # fmt: skip
        specs = [s if len(s) > 1 else s["source"] for s in specs]
        flags["data"] = specs[0] if specs == [data[0]] else specs
    overrides = cfgmod.merge(flags, cfgmod.parse_overrides(sets))
    if categories:
        overrides["categories"] = list(categories)
    if load_in_4bit:
        overrides["load_in_4bit"] = {"true": True, "false": False}.get(load_in_4bit, "auto")
    if max_steps is not None:
        overrides["trainer"] = {**overrides.get("trainer", {}), "max_steps": max_steps}
    cfg = train_config(recipe, overrides)
    info = run(cfg)
    click.echo(json.dumps({k: info[k] for k in ("train_loss", "steps", "tokens_per_s", "wall_time_s")}))
    click.echo(f"adapter: {cfg.output_dir}", err=True)


@cli.command(
    epilog="\b\nExample:\n  revgen synthesize my-corpus/ --adapter runs/backward -o out/synth\n  revgen synthesize pages.warc.gz --adapter runs/backward --dry-run"
)
@click.argument("corpus", required=False)
@recipe_opt
@click.option("--adapter", help="Adapter dir from `revgen train` (default runs/backward).")
@click.option("-o", "--output-dir", help="Run directory (shards/, run.json); rerun to resume.")
@click.option("--model", help="Base model (default: the adapter's own base).")
@click.option("--backend", type=click.Choice(["auto", "vllm", "transformers", "openai"]))
@click.option("--base-url", help="--backend openai: the server's URL, e.g. http://127.0.0.1:8000/v1.")
@click.option("--served-model", help="--backend openai: the model name the server serves.")
@click.option("--api-key-env", help="--backend openai: environment variable with the key (default OPENAI_API_KEY).")
@click.option("--concurrency", type=int, help="--backend openai: requests in flight (default 16).")
@click.option("--merge/--no-merge", default=None, help="Merge the adapter first (default: on CPU only).")
@click.option("--text-field", help="Field holding the text in jsonl/parquet/Hub rows (default 'text').")
@click.option("--html-field", help="Field holding HTML in jsonl/parquet/Hub rows (extracted with trafilatura).")
@click.option("--id-field", help="Field holding a stable document id (default: a content hash).")
@click.option("--txt-mode", type=click.Choice(["document", "paragraphs"]), help=".txt: one doc each, or per paragraph.")
@click.option("--on-bad-row", type=click.Choice(["error", "skip"]), help="Stop at a bad row, or count and skip it.")
@click.option("--max-docs", type=int)
@click.option("--num-candidates", type=int, help="Instructions sampled per segment.")
@click.option(
    "--openers",
    type=int,
    help="Per segment, N more candidates begun with openers from the seed data "
    "(List, Which, ...), scored by fit; curate keeps the best (default 3 when the adapter has its "
    "openers.json; 0: one free instruction per segment).",
)
@click.option(
    "--fit-score/--no-fit-score",
    default=None,
    help="Score each candidate's pmi fit while generating "
    "(transformers backend; default on), so curate need not load the backward model again.",
)
@click.option(
    "--opener-kinds",
    type=click.Choice(["any", "requests", "both"]),
    help="Per segment, half the openers among requests and half among questions (both, the default), "
    "only requests, or any kind by seed weight.",
)
@click.option(
    "--task-mix",
    help="Typed backward model (train --task-types): auto (it names the type), seed "
    "(the seed data's mix) or TYPE=W,TYPE=W.",
)
@click.option("--temperature", type=float)
@click.option("--top-p", type=float)
@click.option("--greedy", is_flag=True, default=None, help="Greedy decoding (temperature 0).")
@click.option("--max-new-tokens", type=int)
@click.option("--seed", type=int)
@click.option("--batch-size", type=int, help="Prompts per generate call (output flushed after each).")
@click.option("--threads", type=int)
@click.option("--overwrite", is_flag=True, default=None, help="Replace a previous run with another config.")
@click.option("--data-parallel", type=int, help="Engine processes on this machine, one per GPU (disjoint shards).")
@click.option(
    "--engine",
    "executor",
    type=click.Choice(["local", "ray"]),
    help="local processes, or Ray (Ray Data + an actor pool); recipe key: executor.",
)
@click.option("--ray-address", help="An existing Ray cluster (default: start a local one).")
@click.option(
    "--trust-remote-code",
    is_flag=True,
    default=None,
    help="Let the model's own Python code run (off by default; logged and recorded in run.json).",
)
@click.option(
    "--select",
    "select_preset",
    type=click.Choice(["default", "clean", "short-answers", "keep-tables", "off"]),
    help="Passages judged before generation: default (page chrome, tables, curate's output checks), clean "
    "(no line pass), short-answers, keep-tables, off (generate for every segment).",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Count documents, segments, selected passages and prompt tokens, and "
    "estimate generated tokens and wall time from a short probe; writes nothing.",
)
@click.option("--probe", type=int, default=64, show_default=True, help="--dry-run: passages the probe generates for.")
@push_opt
@private_opt
@license_opt
@set_opt
def synthesize(recipe, sets, greedy, push_to, private, license_, select_preset, dry_run, probe, **flags) -> None:
    """Generate instructions for CORPUS (file, folder or Hub id) with the backward model."""
    from revgen.api import synth_config
    from revgen.synthesize.run import synthesize as run

    overrides = cfgmod.merge(flags, cfgmod.parse_overrides(sets))
    if greedy:
        if flags.get("temperature") not in (None, 0) or flags.get("top_p") is not None:
            raise click.UsageError("--greedy conflicts with --temperature/--top-p: greedy decoding samples nothing")
        overrides["temperature"] = 0.0
    if select_preset:
        overrides = cfgmod.merge({"select": {"preset": None if select_preset == "default" else select_preset}},
                                 overrides)  # fmt: skip
    cfg = synth_config(recipe, overrides)  # the API builds the same config (revgen/api.py)
    if dry_run:
        from revgen.synthesize.run import dry_run as estimate

        click.echo(json.dumps(estimate(cfg, probe), indent=1))
        return
    info = run(cfg)
    click.echo(json.dumps(info["counts"]))
    click.echo(f"records: {cfg.output_dir}/shards", err=True)
    if push_to:
        _push(cfg.output_dir, push_to, private, license_)


@cli.command(epilog="\b\nExample:\n  revgen curate out/synth -o dataset --format sharegpt")
@click.argument("input_path", metavar="INPUT", required=False)
@recipe_opt
@click.option("-o", "--output-dir", help="Where dataset.jsonl, rejected.jsonl and stats.json go.")
@click.option("--format", "fmt", type=click.Choice(["alpaca", "sharegpt", "messages", "prompt-completion"]))
@click.option("--allow-partial", is_flag=True, default=None, help="Curate a synthesize run that is not complete.")
@click.option(
    "--preset",
    help="Named defaults, over the recipe's: auto (the default: openers for a run with several "
    "candidates per passage), openers (the best-fitting candidate per passage by pmi, toward "
    "the seed's first words, in the four fifths of passages whose best fits best), short-answers (FAQ/Q&A "
    "corpora: answers of 3+ words kept), none.",
)
@click.option(
    "--executor",
    type=click.Choice(["inprocess", "local", "ray", "slurm"]),
    help="inprocess (default): one process; local|ray|slurm: datatrove stages on disk, bounded memory.",
)
@click.option(
    "--tasks", type=click.IntRange(min=1), help="Tasks per staged step (default: one per input file, <= CPUs)."
)
@click.option("--ray-address", help="--executor ray: a running cluster ('auto', 'ray://host:10001').")
@push_opt
@private_opt
@license_opt
@set_opt
def curate(
    input_path,
    recipe,
    fmt,
    sets,
    output_dir,
    push_to,
    private,
    license_,
    allow_partial,
    preset,
    executor,
    tasks,
    ray_address,
) -> None:
    """Filter and deduplicate synthesized records (a synthesize dir or a .jsonl) into a dataset."""
    from revgen.api import curate_config
    from revgen.curate.curation import counts_table
    from revgen.curate.curation import curate as run

    overrides = cfgmod.merge({"input": input_path, "output_dir": output_dir, "format": fmt,
                              "allow_partial": allow_partial, "preset": preset,
                              "engine": {k: v for k, v in (("executor", executor), ("tasks", tasks),
                                                           ("ray_address", ray_address)) if v is not None}},
                             cfgmod.parse_overrides(sets))  # fmt: skip
    cfg = curate_config(recipe, overrides)
    stats = run(cfg)
    if stats.get("submitted"):  # Slurm: the jobs run on; the same command again writes the dataset
        click.echo(json.dumps({"submitted": True, "logs": stats["submitted"]}))
        return
    click.echo(counts_table(stats["counts"]), err=True)
    click.echo(json.dumps(stats["counts"]))
    if push_to:
        _push(cfg.output_dir, push_to, private, license_)


@cli.command(epilog="\b\nExample:\n  revgen card dataset --license cc-by-sa-3.0")
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@license_opt
@language_opt
@click.option("--pretty-name", help="Card title (default from the dir name).")
@click.option("--repo-id", help="Hub id the card's load snippet should name.")
@click.option("--template", type=click.Path(exists=True, dir_okay=False), help="Your own card template (Jinja).")
def card(path, license_, languages, pretty_name, repo_id, template) -> None:
    """Write PATH/README.md, a dataset card filled from the run's stats.json / run.json."""
    from revgen.publish.card import write

    out = write(path, license=license_, language=list(languages) or None, pretty_name=pretty_name, repo_id=repo_id,
                template=template)  # fmt: skip
    click.echo(str(out))


@cli.command(epilog="\b\nExample:\n  HF_TOKEN=... revgen push dataset --repo-id me/my-instructions")
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@click.option("--repo-id", required=True, help="Hub dataset id, user/name or org/name.")
@private_opt
@license_opt
@language_opt
def push(path, repo_id, private, license_, languages) -> None:
    """Upload a curated dataset (or synthesize run) and its card to the Hub: data first, then the card.

    The token comes from HF_TOKEN or `hf auth login`; HF_ENDPOINT picks another Hub."""
    _push(path, repo_id, private, license_, languages)


@cli.command(name="eval", epilog="\b\nExample:\n  revgen eval --adapter runs/backward --max-rows 64")
@recipe_opt
@click.option(
    "--task",
    type=click.Choice(["backward", "forward"]),
    default="backward",
    help="backward: instructions recovered by the adapter; forward: a forward model on held-out pairs.",
)
@click.option("--adapter", help="Adapter dir from `revgen train` (default runs/backward).")
@click.option("--model-dir", help="--task forward: a forward adapter dir or a model (default runs/forward).")
@click.option("--against", help="--task forward: a second model, compared pairwise on the same rows.")
@click.option("--data", help="Held-out pairs (default ADAPTER/heldout.jsonl or MODEL_DIR/heldout.jsonl).")
@click.option("-o", "--output-dir", help="Where eval.json, eval.md and examples.jsonl go.")
@click.option("--backend", type=click.Choice(["auto", "vllm", "transformers"]))
@click.option("--max-rows", type=int)
@click.option("--max-new-tokens", type=int)
@click.option("--no-base", "no_base", is_flag=True, help="Skip the base-model comparison.")
@click.option(
    "--num-candidates", type=int, help="Backward: also report best-of-N (N sampled, the best by --select-by)."
)
@click.option("--select-by", type=click.Choice(["cycle", "pmi"]), help="Best-of-N score (default cycle).")
@click.option(
    "--tag",
    help="--task forward: the system-prompt tag the models read (seed, augmented or its text; "
    "default: the one a tagged model was trained to read).",
)
@set_opt
def eval_cmd(recipe, sets, no_base, task, model_dir, against, tag, **flags) -> None:
    """Backward: generated vs gold instructions, adapter vs base. Forward: NLL, instruction use and
    ROUGE-L of a forward model on held-out pairs, optionally paired against a second model."""
    if task == "forward":
        from revgen.evaluate.forward import ForwardEvalConfig, evaluate_forward, table

        if (
            flags.get("adapter")
            or flags.get("backend")
            or no_base
            or flags.get("num_candidates")
            or flags.get("select_by")
        ):
            raise click.UsageError(
                "--adapter, --backend, --no-base, --num-candidates and --select-by are for --task backward"
            )
        flags = {k: flags[k] for k in ("data", "output_dir", "max_rows", "max_new_tokens")}
        overrides = cfgmod.merge(
            {**flags, "model_dir": model_dir, "against": against, "tag": tag}, cfgmod.parse_overrides(sets)
        )
        click.echo(table(evaluate_forward(cfgmod.load(ForwardEvalConfig, "eval_forward", recipe, overrides))))
        return
    if model_dir or against or tag:
        raise click.UsageError("--model-dir, --against and --tag are for --task forward")
    from revgen.evaluate.backward import EvalConfig, evaluate, table

    if flags.get("adapter") and not flags.get("data"):
        flags["data"] = f"{flags['adapter']}/heldout.jsonl"
    overrides = cfgmod.merge(flags, cfgmod.parse_overrides(sets))
    if no_base:
        overrides["compare_base"] = False
    cfg = cfgmod.load(EvalConfig, "eval", recipe, overrides)
    click.echo(table(evaluate(cfg)))


@cli.command(epilog="\b\nExample:\n  revgen rewrite dataset/dataset.jsonl -o rewritten --backend transformers")
@click.argument("input_path", metavar="DATASET", required=False)
@recipe_opt
@click.option("-o", "--output-dir", help="Where the rewritten shards and run.json go.")
@click.option("--model", help="The rewriter: 'smollm2-135m' (default), a local folder or a Hub id.")
@click.option("--backend", type=click.Choice(["auto", "vllm", "transformers", "openai"]))
@click.option("--base-url", help="--backend openai: the server's URL.")
@click.option("--served-model", help="--backend openai: the model name the server serves.")
@click.option("--keep-original", is_flag=True, default=None, help="Also write each un-rewritten record.")
@set_opt
def rewrite(input_path, recipe, sets, **flags) -> None:
    """Rewrite each record's output into an assistant answer grounded in its passage (back-and-forth translation)."""
    from revgen.rewrite import RewriteConfig
    from revgen.rewrite import rewrite as run

    overrides = cfgmod.merge({"input": input_path, **flags}, cfgmod.parse_overrides(sets))
    info = run(cfgmod.load(RewriteConfig, "rewrite", recipe, overrides))
    click.echo(json.dumps(info["counts"]))


@cli.command(epilog="\b\nExample:\n  revgen report dataset")
@click.argument("path", type=click.Path(exists=True, file_okay=False))
def report(path) -> None:
    """Write PATH/report.html: the funnel, lengths, instruction mix, scores and examples of a curate dir."""
    from revgen.publish.report import write

    click.echo(str(write(path)))


@cli.command(name="run", epilog="\b\nExample:\n  revgen run recipes/smollm2-135m-cpu.yaml --until curate")
@click.argument("recipe", type=click.Path(exists=True, dir_okay=False))
@click.option("--from", "start", metavar="STAGE", help="Rerun this stage and everything after it.")
@click.option("--until", metavar="STAGE", help="Stop after this stage.")
@click.option("--dry-run", is_flag=True, help="Print the plan (what runs, what is skipped and why) and stop.")
def run_cmd(recipe, start, until, dry_run) -> None:
    """Run the stages RECIPE's `run:` section lists, each in its own dir; finished stages are skipped."""
    from revgen.pipeline import run, table

    summary = run(recipe, start, until, dry_run)
    if dry_run:
        for s in summary["stages"]:
            click.echo(f"{s['action']:>4}  {s['name']:<14} {s['kind']:<12} {s['why']}")
        return
    click.echo(table(summary), err=True)
    click.echo(json.dumps({s["name"]: s.get("numbers") for s in summary["stages"]}))


def main() -> None:
    try:
        cli(prog_name="revgen", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted: rerun the same command to resume.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted: rerun the same command to resume (finished work is kept).", err=True)
        sys.exit(130)
    except OSError as exc:  # disk full, permissions, a file where a folder belongs...
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        click.echo(f"Error: {exc.strerror or exc}{where}; files already written are kept", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
