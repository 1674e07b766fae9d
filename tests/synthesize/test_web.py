"""Web text in: HTML through trafilatura, WARC/WET archives, naive dumps' chrome, block-aware segments."""

import gzip
import io

import pytest

from revgen.errors import UserError
from revgen.synthesize.boilerplate import Boilerplate
from revgen.synthesize.corpus import CorpusStats, read_documents
from revgen.synthesize.segment import Segmenter, label
from tests.helpers import write_jsonl

PROSE = [
    "The package tracker collects everything about one source package in one place. It shows the versions in each "
    "suite, the bugs filed against it, and the news that the archive software sends when a new upload is accepted.",
    "Maintainers can subscribe to the tracker to receive the same news by mail. A subscription can be limited to "
    "some keywords, so that a maintainer who only cares about bug reports does not get the build logs as well.",
    "When a package is removed from the archive, its tracker page stays available for a while, which helps the "
    "people who want to adopt it again to find out why it was removed and who maintained it before.",
]
NAV = "<nav><ul><li><a href='/'>Home</a></li><li><a href='/prev'>Prev</a></li><li><a href='/next'>Next</a></li></ul></nav>"


def page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><title>{title}</title></head><body>{NAV}"
            f"<div class='sidebar'><h3>Contents</h3><ul><li><a href='a.html'>1. Intro</a></li>"
            f"<li><a href='b.html'>2. Tracker</a></li></ul></div><main><article><h1>{title}</h1>{body}</article></main>"
            f"<footer>© Copyright 2024 The Team. Created using Sphinx.</footer></body></html>")  # fmt: skip


def test_html_pages_are_extracted_without_their_chrome_and_a_page_without_text_is_counted(tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "a.html").write_text(page("The package tracker", "".join(f"<p>{p}</p>" for p in PROSE)))
    (tmp_path / "site" / "b.htm").write_text(f"<html><body>{NAV}</body></html>")  # all navigation
    (tmp_path / "site" / "c.html").write_bytes(b"\x00\xff\xfe<<<>>> not a page \x00")
    stats = CorpusStats()
    got = list(read_documents(str(tmp_path / "site"), stats=stats))
    assert len(got) == 1 and got[0].site == str(tmp_path / "site")
    text = got[0].text
    assert all(p in " ".join(text.split()) for p in PROSE)
    assert "Prev" not in text and "Copyright" not in text and "Sphinx" not in text
    assert stats.documents == stats.extracted == 1 and sum(stats.extract_skipped.values()) == 2


def test_rows_with_an_html_field_are_extracted_and_a_row_without_it_is_one_clear_error(tmp_path):
    path = write_jsonl(tmp_path / "crawl.jsonl", [{"url": "u1", "html": page("Tracker", f"<p>{PROSE[0]}</p>")},
                                                 {"url": "u2", "content": "no html"}])  # fmt: skip
    with pytest.raises(UserError, match=r"crawl.jsonl line 2: missing html field 'html'"):
        list(read_documents(str(path), html_field="html"))
    stats = CorpusStats()
    got = list(read_documents(str(path), html_field="html", on_bad_row="skip", stats=stats))
    assert [d.text.split("\n\n")[-1] for d in got] == [PROSE[0]] and stats.bad_rows == 1


def _warc(path, records):
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    with path.open("wb") as fh:
        writer = WARCWriter(fh, gzip=True)
        for kind, uri, ctype, body in records:
            http = (
                StatusAndHeaders("200 OK", [("Content-Type", ctype)], protocol="HTTP/1.1")
                if kind == "response"
                else None
            )
            headers = {"WARC-Identified-Payload-Type": ctype} if kind == "conversion" else None
            rec = writer.create_warc_record(uri, kind, payload=io.BytesIO(body.encode()), http_headers=http,
                                            warc_headers_dict=headers)  # fmt: skip
            writer.write_record(rec)
    return path


def test_a_warc_gives_its_html_responses_and_wet_conversions_and_a_torn_one_is_one_clear_error(tmp_path):
    warc = _warc(tmp_path / "crawl.warc.gz", [
        ("response", "https://docs.example.org/tracker", "text/html", page("Tracker", f"<p>{PROSE[1]}</p>")),
        ("request", "https://docs.example.org/tracker", "text/html", "GET /tracker"),
        ("response", "https://docs.example.org/logo.png", "image/png", "PNG..."),
        ("conversion", "https://other.example.com/page", "text/plain", PROSE[2]),
    ])  # fmt: skip
    got = list(read_documents(str(warc)))
    assert [d.site for d in got] == ["docs.example.org", "other.example.com"]
    assert PROSE[1] in " ".join(got[0].text.split()) and got[1].text == PROSE[2]
    torn = tmp_path / "torn.warc.gz"
    torn.write_bytes(warc.read_bytes()[:-200] + gzip.compress(b"WARC/1.0\r\nbroken"))
    with pytest.raises(UserError, match=r"torn.warc.gz: not a readable WARC/WET archive"):
        list(read_documents(str(torn)))


SITE_HEADER = "Debian Developer's Reference  *  Download the ebook"
DUMP = """{header}
Navigation
  * index
  * next |
  * previous |
  * Debian »
  * en »

Table of Contents

1. Resources
   1.1. Mailing lists
   1.2. IRC channels
   1.3. Documentation

{title}

{body}

━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━

Previous topic

3. Debian Developer's Duties

References

   1. file:///usr/share/doc/index.html
   2. https://www.debian.org/
© Copyright 2023, Developer's Reference Team. Created using Sphinx 5.3.0.
"""


def test_a_naive_dump_loses_its_chrome_by_reason_and_keeps_its_text(tmp_path):
    pages = [DUMP.format(header=SITE_HEADER, title=f"{i}. Section {i}", body=f"{PROSE[i]}[{i + 3}]") for i in range(3)]
    chrome = Boilerplate()
    for p in pages:
        chrome.learn(p, "site")
    cleaned = [chrome.clean(p, "site") for p in pages]
    for i, text in enumerate(cleaned):
        assert text == f"{i}. Section {i}\n\n{PROSE[i]}"  # the link marker [n] is gone too
    assert chrome.removed["repeated"] >= 3 * 15  # header, navigation, TOC, footer: the same on every page
    # one page alone (no site to learn from) still loses its navigation, TOC, references and footer
    alone = Boilerplate()
    text = alone.clean(pages[0])
    assert set(alone.removed) == {"navigation", "toc", "rule", "link_refs", "footer"}
    assert text == f"0. Section 0\n\n{PROSE[0]}"  # the header above the navigation goes with it


def test_a_numbered_list_is_content_and_a_flat_toc_is_known_by_the_titles_it_indexes(tokenizer):
    answer = "1. David Ortiz\n2. Ted Williams\n3. Babe Ruth\n4. Cy Young"  # a whole Dolly answer
    intro = "The three steps, in order:\n1. Unpack the archive\n2. Run the script\n3. Remove the files"
    for text in (answer, intro):
        chrome = Boilerplate()
        assert chrome.clean(text) == text and not chrome.removed
    # the segmenter judges blocks the same way: a list is a segment, not a skipped TOC (it dropped 7 of the
    # bundled sample's 276 context-free answers, all numbered lists, before)
    seg = Segmenter(tokenizer, min_words=3)
    rain = "1. Mist\n2. Drizzle\n3. Sleet\n4. Downpour\n5. Freezing Rain\n6. Sun Shower"
    assert seg(answer) == [answer] and seg(rain) == [rain] and seg.stats.skipped_toc == 0
    titles = "1. Intro\n2. Setup\n3. Usage"
    assert label(titles) == "prose" and label(rain) == "prose"  # no sign: a list
    assert label(titles, before="Contents") == "toc"  # a Contents heading above it
    assert label(titles, later={"2. Setup"}) == "toc"  # a title the page repeats below it
    assert label("1. Intro\n1.1 Scope\n2. Setup") == "toc"  # nested numbers
    assert seg("Contents\n\n" + titles) == [] and seg.stats.skipped_toc == 1
    # the same flat numbering is a TOC when the page repeats its titles as headings below it
    page = "1. Intro\n2. Setup\n3. Usage\n\n1. Intro\n\n" + PROSE[0] + "\n\n2. Setup\n\n" + PROSE[1]
    chrome = Boilerplate()
    assert chrome.clean(page).startswith("1. Intro\n\n" + PROSE[0]) and chrome.removed == {"toc": 3}
    refs = Boilerplate()  # a text browser's mailto references are link references too
    assert (
        refs.clean(PROSE[0] + "\n\nReferences\n\n   1. mailto:git@vger.kernel.org\n   2. https://git-scm.com/")
        == PROSE[0]
    )


def test_clean_text_passes_through_byte_for_byte():
    text = "Ask not what your country can do for you.\n\n  1. Indented list item one\nThe end.\n"
    assert Boilerplate().clean(text, "s") == text


TABLE = "\n".join(f"| row {i} | {i * 7} MB | mounted on /srv/{i} |" for i in range(20))


def test_a_table_is_never_cut_and_a_mostly_table_segment_is_skipped_unless_kept(tokenizer):
    doc = "\n\n".join([PROSE[0], "Disk usage", "| mount | size | where |\n|---|---|---|\n" + TABLE, PROSE[1], PROSE[2]])
    seg = Segmenter(tokenizer, max_tokens=450, min_words=10)
    out = seg(doc)
    assert seg.stats.split_documents == 1 and seg.stats.skipped_table == 1
    assert all("| row" not in s for s in out) and [r for r, _ in seg.dropped] == ["table"]
    assert seg.dropped[0][1].count("| row") == 20  # the whole table, in one piece
    kept = Segmenter(tokenizer, max_tokens=450, min_words=10, keep=["table"])(doc)
    assert (
        sum(s.count("| row") for s in kept) == 20
        and sum(any("| row" in ln for ln in s.splitlines()) for s in kept) == 1
    )


def test_a_table_over_the_budget_is_skipped_whole_and_shell_sessions_are_code(tokenizer):
    seg = Segmenter(tokenizer, max_tokens=120, min_words=10)
    out = seg("\n\n".join([PROSE[0], TABLE, PROSE[1]]))
    assert seg.stats.skipped_oversized == 1 and out == [PROSE[0] + "\n\n" + PROSE[1]]
    assert label("$ df -h\nFilesystem  Size  Used\n/dev/sda1  20G  5G") == "code"
    assert label("$ ls -l\n$ cd /srv\n$ make install") == "code" and label("# Installing") == "heading"
    assert label(PROSE[0]) == "prose"


def test_long_documents_are_cut_at_headings(tokenizer):
    sections = [f"{i}. Heading number {i}\n\n{PROSE[i % 3]}\n\n{PROSE[(i + 1) % 3]}" for i in range(1, 5)]
    out = Segmenter(tokenizer, max_tokens=200, min_words=10)("\n\n".join(sections))
    assert [s.split("\n\n")[0] for s in out] == [f"{i}. Heading number {i}" for i in range(1, 5)]


@pytest.mark.slow
def test_selection_runs_before_generation_and_the_dry_run_counts_what_the_run_does(
    trained_adapter, dolly_rows, tmp_path
):
    import json

    from click.testing import CliRunner

    from revgen.cli import cli
    from revgen.curate.curation import CurateConfig, curate
    from revgen.synthesize.run import SynthConfig, dry_run, synthesize

    long = [r["response"] for r in dolly_rows[300:] if 30 <= len(r["response"].split()) <= 120][:5]
    rows = [{"text": t} for t in long] + [
        {"text": long[0] + " That is all."},  # a near duplicate of the first passage
        {"text": " ".join(str(n) for n in range(1000, 1040))},  # numbers: Gopher's not_alphabetic
        {"text": "Disk usage\n\n| mount | size |\n|---|---|\n" + TABLE},  # a bare table
    ]  # fmt: skip
    corpus = write_jsonl(tmp_path / "c.jsonl", rows)
    out = tmp_path / "out"
    cfg = SynthConfig(corpus=str(corpus), adapter=str(trained_adapter[0]), output_dir=str(out), backend="transformers",
                      max_new_tokens=24, batch_size=3, micro_batch_size=3, shard_size=2, min_words=8)  # fmt: skip
    dry = dry_run(cfg, probe=2)
    assert not out.exists()  # the dry run writes nothing
    info = synthesize(cfg)
    c = info["counts"]
    assert dry["selected"] == c["selected"] >= 2 and dry["segments"] == c["segments"] == 7
    assert dry["prompt_tokens"] == info["prompt_tokens_this_run"]
    assert dry["generations"] == c["records"] + sum(v for k, v in c.items() if k.startswith("dropped/"))
    left_out = [json.loads(line) for line in (out / "segments.dropped.jsonl").open()]
    assert {"dedup/near_output", "gopher/not_alphabetic", "segment/table"} <= {d["reason"] for d in left_out}
    assert c["select/dedup/near_output"] == c["select/gopher/not_alphabetic"] == c["skipped_table"] == 1
    assert len(left_out) == 1 + c["segments"] - c["selected"]  # the table, and every passage selection left out
    # curation finds nothing left to drop for the output alone: selection judged the passages already
    stats = curate(CurateConfig(input=str(out), output_dir=str(tmp_path / "ds"), report=False))
    assert not [k for k in stats["counts"] if k.startswith(("dropped/gopher", "dropped/dedup/near_output"))]
    from revgen.publish.report import write

    page = write(tmp_path / "ds").read_text()  # the report shows the funnel from documents to records
    funnel = page[page.index("From documents to records") :]
    for step in ("documents", "segments", "selected", "records", "select/gopher/not_alphabetic", "skipped_table"):
        assert f">{step}<" in funnel, step
    # --select off generates for every segment the segmenter made, the table included
    res = CliRunner().invoke(cli, ["synthesize", str(corpus), "--adapter", str(trained_adapter[0]), "-o", str(out),
                                   "--backend", "transformers", "--select", "off", "--dry-run", "--probe", "1",
                                   "--max-new-tokens", "8", "--openers", "0"])  # fmt: skip
    assert res.exit_code == 0, res.output
    off = json.loads(res.output[res.output.index("{") :])
    assert off["segments"] == 8 and "selected" not in off and off["generations"] == 8


def test_selection_follows_the_recipes_curation_unless_the_recipe_sets_it(tmp_path):
    from revgen import config as cfgmod
    from revgen.synthesize.run import SynthConfig
    from revgen.synthesize.select import follow_curate

    recipe = tmp_path / "r.yaml"
    recipe.write_text("synthesize: {corpus: c.jsonl}\ncurate: {preset: short-answers, gopher: {max_words: 500}}\n")
    sections = cfgmod.read_recipe(recipe)
    cfg = cfgmod.build(SynthConfig, follow_curate(sections["synthesize"], sections["curate"]))
    g = cfg.select.gopher  # curate's preset and its own keys: short passages stay to be curated
    assert (g.min_words, g.min_stop_words, g.max_words) == (3, None, 500)
    own = follow_curate({"select": {"gopher": {"min_words": 40}}}, sections["curate"])
    assert cfgmod.build(SynthConfig, own).select.gopher.min_words == 40  # the synthesize section wins
    off = follow_curate({}, {"gopher": None})
    assert cfgmod.build(SynthConfig, off).select.gopher.enabled is False


def test_a_text_browsers_box_table_is_one_table_block(tokenizer):
    box = "┌──────┬──────┐\n│ size │ used │\n├──────┼──────┤\n│ 20G  │ 5G   │\n└──────┴──────┘"
    seg = Segmenter(tokenizer, max_tokens=120, min_words=10)
    out = seg("\n\n".join([PROSE[0], box.replace("├", "\n\n├"), PROSE[1]]))  # a blank line inside the table
    assert label("└──────┴──────┘") == "table" and seg.stats.skipped_table == 0
    assert sum("┌" in s for s in out) == sum("└" in s for s in out) <= 1  # never a border without its table
