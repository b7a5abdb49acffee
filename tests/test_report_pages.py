"""Issue 22: every report page a person opens has its charts, a unit on every numeric column and
no number in scientific notation.  The pages are parsed as HTML, as a browser would read them."""
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

# Columns whose numbers are plain counts (no unit to give them).
COUNT_HEADERS = {"count", "chips", "macs", "rows", "cols", "arrays", "sms", "ops", "batch", "layer"}
BARE_NUMBER = re.compile(r"^[-+]?[\d,]*\.?\d+$")
SCIENTIFIC = re.compile(r"\d(\.\d+)?[eE][-+]?\d|×\s*10")


class Page(HTMLParser):
    """Tables (header row + body rows of cell text), image sources and the visible text."""

    def __init__(self):
        super().__init__()
        self.tables, self.images, self.text = [], [], []
        self._cell = None
        self._row = None
        self._skip = False

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(dict(attrs)["src"])
        elif tag in ("style", "script"):
            self._skip = True

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[-1].append(self._row)
            self._row = None
        elif tag in ("style", "script"):
            self._skip = False

    def handle_data(self, data):
        if self._skip:
            return
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def read(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def check_page(path: Path, min_images: int) -> Page:
    page = read(path)
    assert len(page.images) >= min_images, f"{path.name}: {len(page.images)} charts"
    for src in page.images:
        assert (path.parent / src).is_file(), src
    text = " ".join(page.text)
    assert not SCIENTIFIC.search(text), SCIENTIFIC.search(text).group(0)
    assert page.tables, f"{path.name} has no table"
    for table in page.tables:
        header, rows = table[0], table[1:]
        for i, name in enumerate(header):
            cells = [r[i] for r in rows if i < len(r) and r[i] not in ("", "–")]
            if cells and all(BARE_NUMBER.match(c) for c in cells):
                assert name.lower() in COUNT_HEADERS, f"{path.name}: column {name!r} has numbers without a unit"
    return page


def test_compare_page(cli, tmp_path):
    code, _, err = cli("compare", "--model", "llama-3.2-1b", "--hw", "h100-sxm", "--hw", "groq-lpu",
                       "--hw", "hardwired-llama-3.1-8b", "--batch", "1,16", "--out", str(tmp_path), "--force")  # hardwired: another model, refused
    assert code == 0, err
    page = check_page(tmp_path / "report.html", min_images=4)
    assert {"roofline.png", "memory_footprint.png", "throughput_latency.png", "time_breakdown.png"} <= set(page.images)
    header = page.tables[0][0]
    assert {"formats w / a / kv", "system", "step latency", "throughput"} <= set(header)


def test_compare_page_context_and_prompt_curves(cli, tmp_path):
    code, _, err = cli("compare", "--model", "llama-3.2-1b", "--hw", "h100-sxm", "--context", "1k,8k",
                       "--out", str(tmp_path / "d"))
    assert code == 0, err
    assert "latency_context.png" in check_page(tmp_path / "d" / "report.html", 4).images
    code, _, err = cli("compare", "--model", "llama-3.2-1b", "--hw", "h100-sxm", "--phase", "prefill",
                       "--prompt", "512,2k", "--out", str(tmp_path / "p"))
    assert code == 0, err
    assert "ttft_prompt.png" in check_page(tmp_path / "p" / "report.html", 4).images


def test_study_index_page(cli, write, tmp_path):
    spec = write("s.yaml", "name: s\ntitle: t\ncases:\n  - {model: llama-3.2-1b, hardware: "
                           "[h100-sxm, groq-lpu]}\nworkloads:\n  - {phase: decode, batch: 1, context: 512}\n")
    code, _, err = cli("study", str(spec), "--out", str(tmp_path), "--force")
    assert code == 0, err
    page = check_page(tmp_path / "index.html", min_images=1)
    assert all(src.startswith("chart_") for src in page.images)
    # the chip columns have no empty 'hw' header row above them
    assert all(row[0] != "hw" for table in page.tables for row in table)


def test_sweep_page(cli, tmp_path):
    code, _, err = cli("sweep", "--space", "hardwired", "--out", str(tmp_path), "--search", "random",
                       "--samples", "24")
    assert code == 0, err
    check_page(tmp_path / "report.html", min_images=2)


def test_serve_page(cli, tmp_path):
    code, _, err = cli("serve", "--model", "llama-3.2-1b", "--requests", "60", "--rate", "4",
                       "--rates", "2,8", "--out", str(tmp_path), "--force")
    assert code == 0, err
    page = check_page(tmp_path / "report.html", min_images=2)
    latency = page.tables[0]
    assert latency[0][:2] == ["metric", "p50"] and latency[1][1].endswith("s")


def test_the_checker_catches_what_it_guards(tmp_path):
    # A page as the reports used to be: a bare-number latency column and 1.188e-05.
    (tmp_path / "old.html").write_text("<table><tr><th>latency_s</th></tr><tr><td>1.188e-05</td></tr>"
                                       "<tr><td>0.5</td></tr></table>", encoding="utf-8")
    with pytest.raises(AssertionError):
        check_page(tmp_path / "old.html", min_images=0)
    (tmp_path / "old2.html").write_text("<table><tr><th>latency_s</th></tr><tr><td>0.25</td></tr></table>",
                                        encoding="utf-8")
    with pytest.raises(AssertionError, match="without a unit"):
        check_page(tmp_path / "old2.html", min_images=0)
