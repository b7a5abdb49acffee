"""Render each report page with headless Chromium into docs/img/ (the README shows them).

    python scripts/screenshots.py [--browser chromium] [--keep DIR]

Writes the reports first (compare with a batch list, the headline study, a sweep, a serving run),
then screenshots each page at a 1,400 px wide window, the width the pages are laid out for.
Debian's `chromium` package is enough (`apt-get install -y chromium`); nothing is downloaded.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMG = ROOT / "docs" / "img"
WIDTH = 1400

# page -> (accelsim arguments writing it under OUT, the page inside OUT, window height in px)
PAGES: dict[str, tuple[list[str], str, int]] = {
    "report_compare": (["compare", "--hw", "h100-sxm", "--hw", "tpu-v5e", "--hw", "hardwired-llama-3.1-8b",
                        "--hw", "groq-lpu", "--batch", "1,8,32", "--out", "{out}"], "report.html", 3400),
    "report_study_index": (["study", str(ROOT / "studies" / "headline.yaml"), "--out", "{out}"],
                           "index.html", 3400),
    "report_sweep": (["sweep", "--space", "hardwired", "--search", "grid", "--out", "{out}"],
                     "report.html", 2600),
    "report_serve": (["serve", "--model", "llama-3.1-8b", "--hw", "h100-sxm", "--rate", "8",
                      "--requests", "400", "--rates", "2,4,8,16", "--out", "{out}"], "report.html", 2600),
}


def write_reports(work: Path, only: list[str] | None) -> dict[str, Path]:
    pages = {}
    for name, (args, page, _height) in PAGES.items():
        if only and name not in only:
            continue
        out = work / name
        command = [sys.executable, "-m", "accelsim", *[a.format(out=out) for a in args]]
        print("$", " ".join(command[2:]), flush=True)
        subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        pages[name] = out / page
    return pages


def screenshot(browser: str, page: Path, png: Path, height: int) -> None:
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--force-device-scale-factor=1", f"--window-size={WIDTH},{height}",
                    f"--screenshot={png}", page.resolve().as_uri()],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--browser", default="chromium", help="a Chromium binary [chromium]")
    parser.add_argument("--keep", type=Path, default=None, help="write the reports here and keep them")
    parser.add_argument("--only", choices=list(PAGES), action="append", help="redraw only these pages")
    args = parser.parse_args()
    if shutil.which(args.browser) is None:
        print(f"error: no '{args.browser}' on PATH (Debian: apt-get install -y chromium)", file=sys.stderr)
        return 2
    work = args.keep or Path(tempfile.mkdtemp(prefix="accelsim-screens-"))
    IMG.mkdir(parents=True, exist_ok=True)
    for name, page in write_reports(work, args.only).items():
        png = IMG / f"{name}.png"
        screenshot(args.browser, page, png, PAGES[name][2])
        print(f"{png.relative_to(ROOT)}  <-  {page}")
    if args.keep is None:
        shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
