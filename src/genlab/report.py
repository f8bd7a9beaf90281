"""``report.html``: one self-contained page (figures embedded) per results folder.

Each experiment recorded in the store contributes a section built by its own ``report``
function: figures (also saved as PNG and SVG beside the page), the paper's claims beside the
measured values, and tables.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import TYPE_CHECKING

from genlab.execution.files import atomic_write
from genlab.execution.results import load
from genlab.execution.store import Store
from genlab.experiments import Results, Section, get_experiment

if TYPE_CHECKING:
    import pandas as pd

_CSS = """
.live{background:#fff6d5;border:1px solid #e5c96b;padding:.5em 1em}
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:13px;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f3f3f3} td.l,th.l{text-align:left}
.yes{color:#0a0;font-weight:bold}.no{color:#c00;font-weight:bold}.na{color:#777}
figure{display:inline-block;margin:0 1em 1em 0} figcaption{font-size:13px;color:#555}
img{max-width:100%} code,pre{background:#f6f6f6;padding:2px 4px}
"""


#: seconds between a browser's reloads of the report of a sweep still running
REFRESH_S = 30


def write_report(out: str | Path) -> Path:
    """Write ``out/report.html`` (and figures in ``out/figures``) for the store at ``out``.

    On a live folder (a sweep still training) the report covers the runs finished so far
    (those still training are listed as running), says how many are training, and reloads
    itself in the browser every :data:`REFRESH_S` seconds; ``genlab report OUT --watch``
    rewrites it as runs finish.
    """
    store = Store.open(out)
    out = Path(out)
    figdir = out / "figures"
    training = store.training()
    parts = [f"<h1>genlab report</h1><p>Results folder: <code>{html.escape(str(out))}</code></p>"]
    if training:
        parts.append(f"<p class=live>A sweep is running: {len(training)} run(s) training now. "
                     f"This page shows the runs finished so far and reloads every "
                     f"{REFRESH_S} s.</p>")
    experiments = store.experiments()
    for name, args in experiments.items():
        results = Results.stored(out, name)
        runs = results.runs  # runs still training are in it (reports handle them)
        sec = get_experiment(name).report(results, figdir)
        parts.append(_section_html(sec, name, args, runs))
    if not experiments:
        runs = load(out)
        parts.append(_section_html(Section("Runs"), "runs", {}, runs))
    refresh = f"<meta http-equiv='refresh' content='{REFRESH_S}'>" if training else ""
    page = (f"<!doctype html><html><head><meta charset='utf-8'>{refresh}"
            f"<title>genlab report</title><style>{_CSS}</style></head><body>{''.join(parts)}"
            f"</body></html>")
    return atomic_write(out / "report.html", page)


def watch(out: str | Path, every_s: float = 5.0, say=print) -> Path:
    """Rewrite ``out/report.html`` whenever a run finishes, until no run is training (the
    sweep's end, or a sweep killed: its claims go stale). Returns the report's path."""
    import time

    store = Store.open(out)
    seen = None
    while True:
        ended = sum(r["status"] != "running" for r in store.runs())
        training = store.training()
        if ended != seen:
            path = write_report(out)
            say(f"report: {path} ({ended} runs finished, {len(training)} training)")
            seen = ended
        if not training:
            return path
        time.sleep(every_s)


def _section_html(sec: Section, name: str, args: dict, runs: pd.DataFrame) -> str:
    h = [f"<h2>{html.escape(sec.title)}</h2>"]
    if args:
        shown = {k: v for k, v in args.items() if v is not None}
        h.append(f"<p>Experiment <code>{name}</code> with "
                 f"<code>{html.escape(json.dumps(shown))}</code></p>")
    for f in sec.figures:
        data = base64.b64encode(Path(f.png).read_bytes()).decode()
        h.append(f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(f.caption)}'>"
                 f"<figcaption>{html.escape(f.caption)} ({Path(f.png).name}, "
                 f"{Path(f.svg).name})</figcaption></figure>")
    if sec.claims:
        h.append("<h3>The papers' claims beside genlab's measurements</h3><table><tr>"
                 "<th class=l>claim</th><th class=l>published</th><th class=l>genlab</th>"
                 "<th class=l>verdict</th><th class=l>why</th></tr>")
        for c in sec.claims:
            css = {"agrees": "yes", "differs": "no"}.get(c.verdict, "na")
            h.append(f"<tr><td class=l>{html.escape(c.claim)}</td>"
                     f"<td class=l>{html.escape(c.paper)}</td>"
                     f"<td class=l>{html.escape(c.measured)}</td>"
                     f"<td class=l><span class={css}>{c.verdict}</span></td>"
                     f"<td class=l>{html.escape(c.reason)}</td></tr>")
        h.append("</table>")
    for caption, table in sec.tables:
        h.append(f"<h3>{html.escape(caption)}</h3>{_table(table)}")
    for note in sec.notes:
        h.append(f"<p>{html.escape(note)}</p>")
    if len(runs):
        h.append("<h3>Reproducing these runs</h3>" + _provenance(runs))
    return "\n".join(h)


def _table(df: pd.DataFrame) -> str:
    return df.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-",
                      classes="runs", border=0)


def _provenance(runs: pd.DataFrame) -> str:
    keys = ["hash", "dataset", "model", "condition", "seed", "train_size", "test_size", "lr",
            "momentum", "lr_decay", "weight_decay", "batch_size", "max_epochs", "device",
            "versions"]
    df = runs[[k for k in keys if k in runs]]
    return ("<p>Each run is fixed by its spec (below) and seed; <code>genlab export</code> "
            "writes the full specs.</p>" + _table(df))
