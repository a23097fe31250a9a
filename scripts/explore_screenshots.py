"""Screenshots of `gantool explore` in a real browser, at desktop and phone width, after a person's
first steps (a seed opened, a walk run), and a check that the page fits the phone's width.

    python scripts/explore_screenshots.py runs/00001-x/checkpoints/best.pt --out docs/ \
        --name explore --truncation 0.8 --walk 3,5,11

writes ``NAME-1280.png`` and ``NAME-390.png`` under ``--out``; exits 1 when the page is wider
than the phone's window. Needs Chromium (Debian: ``apt-get install chromium``) and Playwright
(the dev extra).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WIDTHS = {1280: 900, 390: 844}  # viewport width -> height


def main() -> None:
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--out", type=Path, default=Path("docs"))
    ap.add_argument("--name", default="explore")
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--truncation", help="move the slider here (default: the model's)")
    ap.add_argument("--klass", help="choose this class (a conditional model)")
    ap.add_argument("--seed", type=int, default=5, help="the seed to open")
    ap.add_argument("--walk", default="0,1,2", help="the walk's seeds")
    args = ap.parse_args()
    exe = shutil.which("chromium") or sys.exit("needs Chromium: apt-get install chromium")
    proc = subprocess.Popen([sys.executable, "-m", "gantool", "explore", str(args.model),
                             "--backend", args.backend, "--port", "0"], stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    wide = False
    try:
        line = ""
        while "http://" not in line:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                sys.exit(proc.stderr.read())
        url = line.split("gantool explore: ")[1].split()[0]
        args.out.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=exe, args=ARGS)
            for width, height in WIDTHS.items():
                page = browser.new_page(viewport={"width": width, "height": height})
                page.goto(url)
                loaded(page, "#grid img")
                if args.truncation:
                    page.locator("#tnone").uncheck()
                    page.locator("#truncation").fill(args.truncation)
                    page.wait_for_function(
                        "t => [...document.querySelectorAll('#grid img')].every("
                        "i => i.src.includes('truncation=' + t))", arg=args.truncation)
                if args.klass:
                    with page.expect_response(lambda r: "/api/grid" in r.url):
                        page.select_option("#klass", args.klass)
                loaded(page, "#grid img")
                page.fill("#walk-seeds", args.walk)
                page.fill("#walk-frames", "6")
                page.click("#run-walk")
                loaded(page, "#walk-strip img")
                page.click(f"#grid figure[data-seed='{args.seed}']")
                loaded(page, "#large")
                page.evaluate("window.scrollTo(0, 0)")
                path = args.out / f"{args.name}-{width}.png"
                page.screenshot(path=str(path), full_page=True)
                scroll = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
                print(f"{path}: page {scroll[0]} px wide in a {scroll[1]} px window")
                wide |= scroll[0] > scroll[1]
                page.close()
            browser.close()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    sys.exit(1 if wide else 0)


def loaded(page, selector: str) -> None:
    page.wait_for_function(
        "s => { const i = [...document.querySelectorAll(s)];"
        " return i.length > 0 && i.every(x => x.complete && x.naturalWidth > 0); }",
        arg=selector)


if __name__ == "__main__":
    main()
