"""``revgen push``: a dataset dir to the Hugging Face Hub: data first, then its card.

The card is rendered (and the license settled) before anything is sent, so a bad card never
leaves half a dataset behind. The existing card on the Hub, if any, is merged rather than
overwritten (card.merge). The token comes from ``HF_TOKEN`` or the huggingface_hub login; it is
sent as a header only and scrubbed from any error text revgen prints.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from revgen.errors import UserError
from revgen.publish import card

log = logging.getLogger(__name__)
DEFAULT_ENDPOINT = "https://huggingface.co"


def push(path: str | Path, repo_id: str, *, private: bool = False, license: str | None = None,
         language: list[str] | None = None, pretty_name: str | None = None) -> dict:  # fmt: skip
    from huggingface_hub import CommitOperationAdd, HfApi, constants, get_token

    path = Path(path)
    run = card.collect(path)
    _check_repo_id(repo_id)
    token = get_token()
    if not token:
        raise UserError("no Hugging Face token: set HF_TOKEN or run `hf auth login` (a token with write access)")
    if constants.is_offline_mode():
        raise UserError("HF_HUB_OFFLINE is set: pushing needs the network; unset it for this command")
    text = card.scrub(str(card.render(path, license=license, language=language, pretty_name=pretty_name,
                                      repo_id=repo_id, run=run)), run)  # fmt: skip
    endpoint = os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT).rstrip("/")
    api = HfApi(endpoint=endpoint, token=token)
    done: list[str] = []
    stage = "create the dataset repo"
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        stage = "upload the data"
        files = _data_files(run)
        # uploaded bytes carry no local path (run.json, stats.json and shard meta name files by their names)
        ops = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(f) if name == "data/train.jsonl" or f.suffix == ".png"
                                  else card.scrub(f.read_text(encoding="utf-8"), run).encode()) for name, f in files]  # fmt: skip
        data = api.create_commit(repo_id, ops, repo_type="dataset",
                                 commit_message=f"revgen: {run.n_rows} rows ({run.kind})")  # fmt: skip
        done.append(f"data ({len(ops)} files)")
        stage = "read the existing card"
        merged = card.merge(text, _remote_card(api, repo_id, token))
        stage = "upload the card"
        api.create_commit(repo_id, [CommitOperationAdd(card.CARD_FILE, merged.encode())], repo_type="dataset",
                          commit_message="revgen: dataset card")  # fmt: skip
        done.append("card")
    except Exception as exc:  # the boundary: every failure becomes one message saying what is already public
        msg = str(exc).replace(token, "***")
        half = " The data is on the Hub without its card: rerun `revgen push` to add it." if done else ""
        raise UserError(f"push to {repo_id} ({endpoint}): could not {stage}: {type(exc).__name__}: {msg}\n"
                        f"Published so far: {', '.join(done) or 'nothing'}.{half}") from None  # fmt: skip
    card.save_local(path, text)  # after the push: a failed one leaves a hand-written README.md as it was
    url = f"{endpoint}/datasets/{repo_id}"
    log.info("pushed %s rows to %s (data commit %s)", run.n_rows, url, data.oid[:12])
    return {"url": url, "rows": run.n_rows, "files": [name for name, _ in files] + [card.CARD_FILE]}


def _check_repo_id(repo_id: str) -> None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise UserError(f"bad --repo-id {repo_id!r}: expected 'user/name' or 'org/name' ({exc})") from None
    if repo_id.count("/") != 1:
        raise UserError(f"bad --repo-id {repo_id!r}: expected 'user/name' or 'org/name'")


def _data_files(run: card.Run) -> list[tuple[str, Path]]:
    """(path in repo, local file): the rows under data/, the run records under revgen/."""
    if run.kind == "curated":
        files = [("data/train.jsonl", run.data_files[0])]
    else:
        files = [(f"data/train-{f.stem}.jsonl", f) for f in run.data_files]
    for name in ("stats.json", "run.json", "scores.jsonl"):  # scores.jsonl: line i = train.jsonl row i
        if (run.path / name).is_file():
            files.append((f"revgen/{name}", run.path / name))
    if run.kind == "curated" and (run.path / "report.html").is_file():  # the card shows two of its plots
        files += [("report.html", run.path / "report.html")]
        files += [(f"report/{f.name}", f) for f in sorted((run.path / "report").glob("*.png"))]
    return files


def _remote_card(api, repo_id: str, token: str) -> str | None:
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    url = f"{api.endpoint}/datasets/{repo_id}/resolve/main/{card.CARD_FILE}"
    resp = get_session().get(url, headers=build_hf_headers(token=token), follow_redirects=True)
    if resp.status_code == 404:
        return None
    hf_raise_for_status(resp)
    return resp.text
