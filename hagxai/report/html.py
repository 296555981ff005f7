"""``report.html``: one self-contained page (pictures embedded as base64, no script, no network)
that opens from disk: the summary table with CIs and p-values, the pictures, the config, the
dataset and model identity, library versions and the command that made it."""

from __future__ import annotations

import base64
import datetime
import html
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from hagxai.atomic import write_atomic

STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; max-width: 1800px; }
table { border-collapse: collapse; font-size: 12px; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #bbb; padding: 3px 6px; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
tr.learned td { background: #eef6ff; font-weight: bold; }
tr.flagged td { background: #fff0f0; }
td.p { color: #555; font-size: 11px; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.3em 0 1em; }
pre { background: #f6f6f6; padding: 0.6em; font-size: 11px; overflow-x: auto; }
.note { color: #a00; }
"""


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("hagxai", "torch", "torchvision", "timm", "ultralytics", "numpy", "scipy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _num(value: float | None) -> str:
    return "–" if value is None or value != value else f"{value:.3f}"


def _p(value: float | None) -> str:
    if value is None or value != value:
        return "–"
    return "&lt;0.001" if value < 0.001 else f"{value:.3f}"


def summary_table(summary: dict[str, Any]) -> str:
    """The summary as an HTML table: mean [95% CI] per metric, p against the learned head."""
    from hagxai.report.evaluate import table_columns

    columns = table_columns(summary)
    learned = [r["name"] for r in summary["rows"] if r["kind"] == "learned"]
    arrows = {c: "↑" if summary["higher_is_better"][c] else "↓" for c in columns}
    head = "".join(f"<th>{html.escape(c)} {arrows[c]}</th>" for c in columns)
    lines = [f'<table id="summary"><tr><th>row</th>{head}<th>flags</th></tr>']
    for row in summary["rows"]:
        name = html.escape(row["name"])
        if row["kind"] == "absent":
            cells = "".join("<td>–</td>" for _ in columns)
            note = html.escape(row["note"])
            lines.append(f'<tr><td>{name}</td>{cells}<td class="note">{note}</td></tr>')
            continue
        classes = [row["kind"]] + (["flagged"] if row.get("flagged") else [])
        cells = []
        for c in columns:
            m = row["metrics"][c]
            text = f"{_num(m['mean'])} [{_num(m['low'])}, {_num(m['high'])}]"
            if learned and row["name"] not in learned:
                text += f'<br><span class="p">p={_p(row["p"][learned[0]][c])}</span>'
            cells.append(f"<td>{text}</td>")
        flags = []
        if row.get("flagged"):
            flags.append("randomisation: barely depends on the model")
        if row["note"]:
            flags.append(html.escape(row["note"]))
        flag_text = "; ".join(flags)
        lines.append(
            f'<tr class="{" ".join(classes)}"><td>{name}</td>{"".join(cells)}'
            f'<td class="note">{flag_text}</td></tr>'
        )
    lines.append("</table>")
    return "\n".join(lines)


def _figure(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    name = html.escape(path.stem)
    return f'<h3>{name}</h3>\n<img id="fig-{name}" alt="{name}" src="data:image/png;base64,{data}">'


def render(summary: dict[str, Any], figures: list[Path], config_yaml: str) -> str:
    """The report page as one HTML string."""
    model, data = summary["model"], summary["dataset"]
    created = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    versions = ", ".join(f"{k} {v}" for k, v in _versions().items())
    identity = [
        ("model", f"{model['name']} ({model['task']}), weights digest {model['digest']}"),
        ("layers", ", ".join(model["layers"])),
        ("dataset", f"{data['root']} ({data['format']}), fingerprint {data['fingerprint']}"),
        ("images", f"{data['images']} (splits {data['splits']}; {data['skipped']} skipped)"),
        ("command", summary.get("command") or "–"),
        ("created", created),
        ("versions", versions),
    ]
    facts = "".join(
        f"<tr><td>{html.escape(k)}</td><td style='text-align:left'>{html.escape(str(v))}</td></tr>"
        for k, v in identity
    )
    from hagxai.report.evaluate import summary_markdown

    rand = summary_markdown(summary, title=False).split("Model randomisation", 1)
    rand_text = f"Model randomisation{rand[1]}" if len(rand) > 1 else "not run"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{html.escape(summary["name"])}: hagxai evaluation</title>
<style>{STYLE}</style></head>
<body>
<h1>{html.escape(summary["name"])}: plausibility and faithfulness</h1>
<p>{summary["images"]} images. Each cell: mean [95% CI]
({html.escape(summary["ci"])}); p: {html.escape(summary["tests"])}.
Faithfulness on a black and on a blurred canvas, {summary["faithfulness_steps"]} steps.</p>
{summary_table(summary)}
<h2>Model randomisation</h2>
<pre>{html.escape(rand_text)}</pre>
<h2>Pictures</h2>
{"".join(_figure(p) for p in figures)}
<h2>Identity</h2>
<table id="identity">{facts}</table>
<h2>Config</h2>
<pre>{html.escape(config_yaml)}</pre>
</body></html>
"""


def write_report(
    path: Path, summary: dict[str, Any], figures: list[Path], config_yaml: str
) -> Path:
    """Write ``report.html`` atomically; returns its path."""
    write_atomic(path, render(summary, figures, config_yaml).encode("utf-8"))
    return path
