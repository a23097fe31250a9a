"""`gantool report RUN_DIR`: one self-contained HTML page per run (and, in the run's own
``report/`` folder, its plots as PNG files).

Plots from ``metrics.jsonl``: the losses, D(x) and D(G(z)), the fake/real batch spread and
sample diversity the divergence guard watches, the learning rates, and FID/KID where the run
evaluated; rollback events are drawn as red vertical lines on every plot. Below them, the
sample grids over time. Images are embedded as base64, so the page can be mailed or archived alone.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
import sys
from pathlib import Path

from gantool.errors import GantoolError
from gantool.fileio import atomic_write, read_record
from gantool.train.runlog import METRICS, read_rows

PLOTS = (
    ("losses", "loss", [("loss_d", "D loss"), ("loss_g", "G loss"),
                         ("loss_recon", "D reconstruction")]),
    ("discriminator", "mean sigmoid(D)", [("d_real", "D(x)"), ("d_fake", "D(G(z))")]),
    ("spread", "fake / real", [("spread", "batch spread (G)"),
                               ("diversity", "sample diversity (as sampled)")]),
    ("learning-rates", "learning rate", [("lr_g", "G"), ("lr_d", "D")]),
)


def read_metrics(run_dir: Path) -> tuple[list[dict], list[dict], int]:
    """(training rows, event rows, damaged lines skipped) of a run's metrics.jsonl."""
    path = run_dir / METRICS
    if not path.is_file():
        raise GantoolError(f"{run_dir} has no metrics.jsonl: pass a run directory "
                           "(runs/NNNNN-name)")
    kept, bad = read_rows(path)
    rows = [row for _, row in kept]
    return ([r for r in rows if "event" not in r], [r for r in rows if "event" in r], bad)


def write_report(run_dir: Path, out: Path | None = None) -> Path:
    """Write ``out`` (default ``RUN_DIR/report/index.html``, with its plots beside it as PNG
    files; a page elsewhere is written alone: everything is embedded in it)."""
    try:
        import matplotlib
    except ImportError:
        raise GantoolError("the report needs matplotlib: pip install 'gantool[report]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, events, bad = read_metrics(run_dir)
    if bad:
        print(f"{run_dir / METRICS}: skipped {bad} damaged line(s) it could not read",
              file=sys.stderr)
    if not rows:
        raise GantoolError(f"{run_dir}/metrics.jsonl has no training rows yet")
    pngs = out is None  # the run's own report folder also gets the plots as files
    out = out or run_dir / "report" / "index.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    rollbacks = [e for e in events if e["event"] in ("rollback", "stop")]
    evals = [e for e in events if e["event"] == "eval"]
    start = _record(run_dir / "session.json")
    plots = list(PLOTS)
    for metric in ("fid", "kid"):
        if any(metric in e for e in evals):
            plots.append((metric, metric.upper(), [(metric, metric.upper())]))
    figures = []
    for name, ylabel, series in plots:
        source = evals if name in ("fid", "kid") else rows
        fig, ax = plt.subplots(figsize=(7, 3), dpi=100)
        for key, label in series:
            pts = [(r["step"], r[key]) for r in source if key in r]
            if pts:
                ax.plot(*zip(*pts), label=label, marker="o" if source is evals else None,
                        linewidth=1)
        for e in rollbacks:
            ax.axvline(e["at_step"], color="red", linewidth=1, alpha=0.6)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        if name == "learning-rates":
            ax.set_yscale("log")
        ax.legend(loc="best", fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        plt.close(fig)
        if pngs:
            with atomic_write(out.parent / f"{name}.png") as f:
                f.write(buf.getvalue())
        figures.append((name, buf.getvalue()))
    grids = sorted((run_dir / "samples").glob("step-*.png"))
    config = _record(run_dir / "config.json")
    page = _page(run_dir, rows, evals, rollbacks, figures, grids, config, start,
                 _classes(config), checkpointed_step(run_dir))
    with atomic_write(out) as f:
        f.write(page.encode())
    return out


def _record(path: Path) -> dict | None:
    """A run's record (config.json, session.json) as an object, or None where it is missing or
    damaged: the report is drawn without what it would have added."""
    try:
        return read_record(path, {})
    except GantoolError:
        return None


# a run's step checkpoints, checkpoints/step-NNNNNNN.pt (gantool.train.run_files' names, read
# here by name: the report needs no torch); a rollback deletes those past the step it returns to
STEP_CHECKPOINT = re.compile(r"^step-(\d+)\.pt$")


def checkpointed_step(run_dir: Path) -> int | None:
    """The step of a run's newest step checkpoint (last.pt's), from the file names; None when
    it has none."""
    steps = [int(m[1]) for p in (run_dir / "checkpoints").glob("step-*.pt")
             if (m := STEP_CHECKPOINT.match(p.name))]
    return max(steps, default=None)


def _progress(last: dict, checkpointed: int | None) -> str:
    """Where the run is: its newest checkpoint's step (and epoch), and the last metrics row's
    where that differs (rows are written every train.log_every steps)."""
    logged, epoch = last["step"], last.get("epoch")
    per_step = epoch / logged if logged and isinstance(epoch, (int, float)) else None

    def at(step: int) -> str:
        return f"step {step:,}" + (f" (epoch {step * per_step:.2f})" if per_step else "")

    if checkpointed is None:
        return f"{at(logged)}, as last logged; no checkpoint yet"
    if checkpointed >= logged:
        return at(checkpointed) + ("" if checkpointed == logged else
                                   f"; metrics logged to step {logged:,}")
    return f"{at(logged)}, as last logged; last checkpoint at step {checkpointed:,}"


def _img(png: bytes, alt: str, grid: bool = False) -> str:
    data = base64.b64encode(png).decode()
    click = ' class="grid" title="click to enlarge" onclick="this.classList.toggle(\'big\')"' \
        if grid else ""
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}"{click}>'


def _facts(rows: list[dict], evals: list[dict], rollbacks: list[dict], config: dict | None,
           start: dict | None = None, checkpointed: int | None = None) -> list:
    """The headline numbers: progress, wall time, throughput, device, losses, best metric."""
    last = rows[-1]
    facts = [_progress(last, checkpointed)]
    times = [r["time"] for r in rows if "time" in r]
    if len(times) > 1:
        wall = times[-1] - times[0]
        facts.append(f"wall time between the first and last log row: {wall / 3600:.2f} h")
    rates = sorted(r["images_per_s"] for r in rows if "images_per_s" in r)
    if rates:
        facts.append(f"training images/s: median {rates[len(rates) // 2]:,.0f}")
    if start is not None:  # what the latest training session ran on
        facts.append(f"device: {start.get('device', '?')}, precision: "
                     f"{start.get('precision', '?')}, processes: {start.get('processes', 1)}")
    elif isinstance((config or {}).get("train"), dict):  # a run from before session.json
        train = config["train"]
        facts.append(f"device: {train.get('device', '?')} (configured), amp: "
                     f"{train.get('amp', '?')}")
    facts.append(f"last D loss {last.get('loss_d', float('nan')):.3f}, "
                 f"G loss {last.get('loss_g', float('nan')):.3f}")
    facts.append(f"divergence-guard events: {len(rollbacks)}")
    scored = [e for e in evals if "fid" in e or "kid" in e]
    if scored:
        metric = "fid" if "fid" in scored[0] else "kid"
        best = min((e for e in scored if metric in e), key=lambda e: e[metric])
        facts.append(f"best {metric.upper()} {best[metric]:.4g} at step {best['step']:,} "
                     "(checkpoints/best.pt)")
    return facts


def _classes(config: dict | None) -> list[str]:
    """A conditional run's class names from its config.json ([] otherwise)."""
    model = (config or {}).get("model")
    names = model.get("classes") if isinstance(model, dict) else None
    return [str(n) for n in names] if isinstance(names, list) else []


def _page(run_dir, rows, evals, rollbacks, figures, grids, config, start=None,
          classes: list[str] | None = None, checkpointed: int | None = None) -> str:
    items = "".join(f"<li>{html.escape(f)}</li>" for f in _facts(rows, evals, rollbacks, config,
                                                                  start, checkpointed))
    events = "".join(
        f"<li>step {e['at_step']:,} -> {e['step']:,}: {html.escape(e['reason'])} "
        f"(lr x{e['lr_scale']:g})</li>" for e in rollbacks) or "<li>none</li>"
    plots = "".join(f"<h3>{html.escape(n)}</h3>{_img(p, n)}" for n, p in figures)
    shown = grids if len(grids) <= 12 else [grids[round(i * (len(grids) - 1) / 11)]
                                            for i in range(12)]
    samples = "".join(f"<figure>{_img(g.read_bytes(), g.stem, grid=True)}<figcaption>"
                      f"{html.escape(g.stem)}</figcaption></figure>" for g in shown)
    rows_are = (f"<p>A conditional model: one row per class, top to bottom: "
                f"{html.escape(', '.join(classes))}.</p>" if classes else "")
    about = ("<p>The same seeds in every grid, from the EMA generator; click a grid to enlarge "
             f"it.</p>{rows_are}" if grids else
             "<p>samples/ holds no sample grid: training writes one at its first step, on the "
             "train.sample_every cadence and when it stops.</p>")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>gantool run {html.escape(run_dir.name)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:sans-serif;margin:2em auto;padding:0 1em;max-width:1100px}}
img{{max-width:100%;height:auto}} img.grid{{width:256px;cursor:zoom-in;image-rendering:pixelated}}
img.grid.big{{width:100%;cursor:zoom-out}}
figure{{display:inline-block;margin:4px;text-align:center;font-size:12px;max-width:100%}}
pre{{background:#f4f4f4;padding:1em;overflow:auto;font-size:12px}}</style></head><body>
<h1>{html.escape(run_dir.name)}</h1><ul>{items}</ul>
<h2>Divergence guard</h2><ul>{events}</ul>
<h2>Curves</h2><p>Red lines: steps where the divergence guard rolled back.</p>{plots}
<h2>Samples over time</h2>{about}{samples}
<h2>Configuration</h2><pre>{html.escape(json.dumps(config, indent=2) if config else
                                          "(config.json is missing or damaged)")}</pre>
</body></html>
"""
