"""Check `gantool report` in a real browser: screenshots at desktop and phone width, and whether
the page fits the phone's width (no sideways scrolling).

    python scripts/report_screenshots.py runs/00001-fashion-mnist --out docs/

writes ``report-1280.png`` and ``report-390.png`` under ``--out`` and prints the page's width at
each window width; exits 1 when the page is wider than the window. Needs Chromium (Debian:
``apt-get install chromium``).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

WIDTHS = {1280: 2200, 390: 3400}  # viewport width -> height of the screenshot
MIN_WINDOW = 500  # Chromium's narrowest window: a phone's viewport is an iframe inside one
# In the report: tell the page around it (the iframe's parent, or itself) how wide it is.
MEASURE = ("<script>addEventListener('load', () => parent.postMessage("
           "document.documentElement.scrollWidth + ',' + innerWidth, '*'));</script>")
FRAME = ("<html><body style='margin:0'><iframe src='{src}' style='border:0;width:{w}px;"
         "height:{h}px'></iframe><script>addEventListener('message', e => document.title = "
         "'width=' + e.data);</script></body></html>")


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    raise SystemExit("needs Chromium: apt-get install chromium")


def browse(exe: str, page: Path, width: int, height: int, *args: str) -> str:
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           f"--window-size={width},{height}", "--virtual-time-budget=3000", *args, page.as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--out", type=Path, default=Path("docs"))
    args = ap.parse_args()
    exe = chromium()
    args.out.mkdir(parents=True, exist_ok=True)
    fits = True
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "report.html"
        subprocess.run([sys.executable, "-m", "gantool", "report", str(args.run_dir), "--out",
                        str(page)], check=True)
        page.write_text(page.read_text().replace("</body>", MEASURE + "</body>", 1))
        for width, height in WIDTHS.items():
            shot = args.out / f"report-{width}.png"
            framed = Path(tmp) / f"frame-{width}.html"
            framed.write_text(FRAME.format(src=page.name, w=width, h=height))
            window = max(width, MIN_WINDOW)
            browse(exe, framed, window, height, f"--screenshot={shot}")
            if window > width:
                from PIL import Image

                with Image.open(shot) as im:
                    im.crop((0, 0, width, height)).save(shot)
            dom = browse(exe, framed, window, 800, "--dump-dom")
            found = re.search(r"<title>width=(\d+),(\d+)</title>", dom)
            page_width, inner = (int(found[1]), int(found[2])) if found else (-1, -1)
            fits &= 0 < page_width <= width == inner
            print(f"{inner} px viewport: page {page_width} px wide, "
                  f"{'fits' if 0 < page_width <= width else 'DOES NOT FIT'}; {shot}")
    sys.exit(0 if fits else 1)


if __name__ == "__main__":
    main()
