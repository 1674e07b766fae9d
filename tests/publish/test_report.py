"""The run report: real plots of a real curate run, opened in headless Chromium (Debian's package)."""

import json
import os
import shutil

import pytest

from revgen.curate.curation import CurateConfig, curate
from revgen.publish.report import funnel
from tests.helpers import write_jsonl

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def curated(tmp_path, dolly_rows):
    rows = [{"id": f"r{i}", "instruction": r["instruction"], "output": r["response"],
             "meta": {"scores": {"cycle": -1.0 - i / 50}}} for i, r in enumerate(dolly_rows[:80])]  # fmt: skip
    rows += [{**rows[0], "id": "dup"}, {**rows[1], "id": "short", "instruction": "Hi"}]
    src = write_jsonl(tmp_path / "recs.jsonl", rows)
    stats = curate(CurateConfig(input=str(src), output_dir=str(tmp_path / "d")))
    return tmp_path / "d", stats


def test_funnel_steps_add_up(curated):
    out, stats = curated
    steps = funnel(stats["counts"])
    assert steps[0] == ("records in", 82) and steps[-1] == ("kept", stats["counts"]["kept"])
    assert steps[-2][1] == stats["counts"]["kept"]  # every drop is one step of the funnel
    page = (out / "report.html").read_text()
    assert page.count("<img") == 4 and "data:image/png;base64," in page and "http" not in page.split("<body>")[1]
    assert {p.name for p in (out / "report").iterdir()} == {"funnel.png", "lengths.png", "mix.png", "scores.png"}
    # dropped rows appear beside kept ones, each with its reason and its text
    import re

    dropped = re.findall(r"<tr class='dropped'><td>dropped</td><td>([^<]+)</td><td>([^<]+)</td>", page)
    assert len(dropped) == 6 and page.count("<tr class='kept'>") == 6, dropped


def test_report_loads_in_chromium_and_every_image_decodes_and_is_not_blank(curated, tmp_path):
    if not CHROMIUM:
        if os.environ.get("REVGEN_REQUIRE_BROWSER"):
            pytest.fail("chromium is not installed (.ci/setup installs Debian's chromium)")
        pytest.skip("chromium is not installed")
    from playwright.sync_api import sync_playwright

    out, _ = curated
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])  # fmt: skip
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto((out / "report.html").as_uri(), wait_until="load")
        images = page.evaluate("""() => Array.from(document.images).map(img => {
            const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
            const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
            const d = ctx.getImageData(0, 0, c.width, c.height).data; const seen = new Set();
            for (let i = 0; i < d.length; i += 4 * 97) seen.add(d[i] * 65536 + d[i + 1] * 256 + d[i + 2]);
            return {alt: img.alt, complete: img.complete, w: img.naturalWidth, h: img.naturalHeight, colors: seen.size};
        })""")
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert not errors, errors
    assert len(images) == 4, images
    for img in images:  # decoded, with a size, and more than a blank canvas (axes, bars, text)
        assert img["complete"] and img["w"] > 200 and img["h"] > 100 and img["colors"] >= 5, img
    assert (tmp_path / "report.png").stat().st_size > 20_000
    json.dumps(images)


def test_eval_report_has_per_category_bars_with_intervals(tmp_path):
    from revgen.publish.report import write

    rows = [{"system": s, "category": c, "rouge_l": v} for s, base in (("adapter", 0.5), ("base", 0.1))
            for c in ("open_qa", "brainstorming") for v in (base, base + 0.2, base + 0.1)]  # fmt: skip
    write_jsonl(tmp_path / "examples.jsonl", rows)
    (tmp_path / "eval.json").write_text(json.dumps({"command": "eval", "rows": 6}))
    page = write(tmp_path).read_text()
    assert page.count("data:image/png;base64,") == 1 and (tmp_path / "report" / "categories.png").stat().st_size > 5000
