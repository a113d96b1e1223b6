"""Write an analysis: report.json (stable keys), report.md, a self-contained report.html, PNGs and CSVs."""

from __future__ import annotations

import base64
import csv
import html
import io
import re
from pathlib import Path

import numpy as np

from rnnlab.runs import atomic_write_bytes, atomic_write_json

PICTURES = ("reliability.png", "confidence.png", "length.png")


def write_report(out: Path, report: dict, *, mistakes_rows: list[dict], issue_rows: list[dict]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "report.json", report)
    _write_csv(out / "mistakes.csv", mistakes_rows)
    _write_csv(out / "label_issues.csv", issue_rows)
    pictures = _charts(report)
    for name, png in pictures.items():
        atomic_write_bytes(out / name, png)
    markdown = to_markdown(report)
    atomic_write_bytes(out / "report.md", markdown.encode())
    atomic_write_bytes(out / "report.html", _html(report, pictures).encode())


def _write_csv(path: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    atomic_write_bytes(path, buffer.getvalue().encode())


def headline_line(report: dict) -> str:
    h, c = report["headline"], report["calibration"]
    parts = [
        f"accuracy {100 * h['accuracy']:.2f} % [{100 * h['accuracy_low']:.1f}, {100 * h['accuracy_high']:.1f}]",
        f"macro-F1 {100 * h['macro_f1']:.2f} %",
        f"ECE {c['before']['ece']:.3f} → {c['after']['ece']:.3f} (T = {c['temperature']:.2f})",
    ]
    behaviour = report["behaviour"]
    if "failure_rate" in behaviour:
        parts.append(f"behavioural failures {100 * behaviour['failure_rate']:.1f} %")
    return f"{report['data']}, {report['examples']:,} texts: " + " · ".join(parts)


SECTIONS = ("headline", "calibration", "mistakes", "slices", "label_issues", "behaviour", "attribution")


def to_markdown(report: dict, *, sections: tuple[str, ...] = SECTIONS, pictures: str = "", level: int = 1) -> str:
    """The report as markdown: `sections` in their order; `pictures` prefixes the PNG names (for docs/img/);
    `level` is the title's heading level (sections sit one below)."""
    writers = {"headline": _headline_md, "calibration": _calibration_md, "mistakes": _mistakes_md, "slices": _slices_md,
               "label_issues": _issues_md, "behaviour": _behaviour_md, "attribution": _attribution_md}  # fmt: skip
    title = f"{'#' * level} Analysis of `{report['run']}` on {report['data']}\n\n{headline_line(report)}\n"
    body = "\n".join([title, *(writers[name](report) for name in sections), f"Written in {report['seconds']:.0f} s.\n"])
    body = body.replace("\n## ", "\n" + "#" * (level + 1) + " ")
    return re.sub(r"!\[(\w+)\]\((\w+\.png)\)", lambda m: f"![{m[1]}]({pictures}{m[2]})", body)


def _headline_md(report: dict) -> str:
    h, after, names = report["headline"], report["calibration"]["after"], report["label_names"]
    accuracy = f"{100 * h['accuracy']:.2f} % [{100 * h['accuracy_low']:.2f}, {100 * h['accuracy_high']:.2f}]"
    metrics = [
        ["accuracy (95 % Wilson)", accuracy],
        ["macro-F1", f"{100 * h['macro_f1']:.2f} %"],
        ["NLL (calibrated)", f"{after['nll']:.4f}"],
        ["Brier (calibrated)", f"{after['brier']:.4f}"],
    ]
    classes = [
        [n, f"{p:.3f}", f"{r:.3f}", f"{f:.3f}", s]
        for n, p, r, f, s in zip(names, h["precision"], h["recall"], h["f1"], h["support"])
    ]
    confusion = [[n, *row] for n, row in zip(names, h["confusion"])]
    return "\n\n".join(
        [
            "## Headline",
            _table(["metric", "value"], metrics),
            _table(["class", "precision", "recall", "F1", "support"], classes),
            "Confusion (rows: gold, columns: predicted):",
            _table(["", *names], confusion),
            "",
        ]
    )


def _calibration_md(report: dict) -> str:
    c = report["calibration"]
    keys = ("ece", "ece_equal_mass", "mce", "nll", "brier")
    rows = [[stage, *(f"{c[stage][k]:.4f}" for k in keys)] for stage in ("before", "after")]
    fitted = (
        f"Temperature T = {c['temperature']:.3f}, fitted on {c['fitted_on']} ({c['fit_examples']:,} texts); stored "
        "in `calibration.json` and applied by `predict`, `rnnlab.load` and `serve` (`--uncalibrated` for raw)."
    )
    table = _table(["", "ECE (15 bins)", "ECE (equal mass)", "MCE", "NLL", "Brier"], rows)
    return "\n\n".join(["## Calibration", fitted, table, "![reliability](reliability.png)", "![confidence](confidence.png)", ""])


def _mistakes_md(report: dict) -> str:
    m = report["mistakes"]
    rows = [
        [
            e["row"],
            e["gold"],
            e["predicted"],
            f"{e['probability']:.3f}",
            f"{e['loss']:.2f}",
            f"{e['n_tokens']}{' (cut)' if e['truncated'] else ''}",
            _cell(e.get("span", "–")),
            _cell(e["excerpt"]),
        ]
        for e in m["top"]
    ]
    parts = [
        "## Most confident mistakes",
        _table(["#", "gold", "predicted", "p", "loss", "tokens", "span that drove it", "excerpt"], rows),
        f"All {m['errors']:,} errors: `mistakes.csv`.",
    ]
    if m["most_confused"] and len(report["label_names"]) > 2:
        pairs = [[p["gold"], p["predicted"], p["count"]] for p in m["most_confused"]]
        parts += ["Most confused pairs:", _table(["gold", "predicted", "count"], pairs)]
    return "\n\n".join([*parts, ""])


def _slices_md(report: dict) -> str:
    by = report["slices"]
    return "\n\n".join(["## Slices", _slice_table(by["by_length"]), "![length](length.png)", _slice_table(by["by_label"]), ""])


def _issues_md(report: dict) -> str:
    li = report["label_issues"]
    intro = (
        f"Confident learning on {li['source']}: {li['candidates']:,} candidates ({100 * li['share']:.1f} %); the "
        f"{len(li['top'])} most suspicious (lowest self-confidence) are below, all in `label_issues.csv`."
    )
    rows = [[r["row"], r["given"], r["suggested"], f"{r['self_confidence']:.3f}", _cell(r["excerpt"])] for r in li["top"]]
    return "\n\n".join(
        ["## Label-issue candidates", intro, _table(["#", "given", "suggested", "self-confidence", "excerpt"], rows), ""]
    )


def _behaviour_md(report: dict) -> str:
    b = report["behaviour"]
    if "skipped" in b:
        return f"## Behavioural tests\n\nSkipped: {b['skipped']}\n"
    rows = [[t["test"], t["kind"], t["cases"], f"{100 * t['failure_rate']:.1f} %", _cell(_example(t))] for t in b["tests"]]
    intro = f"Seed {b['seed']}; {b['cases']:,} cases, {100 * b['failure_rate']:.1f} % failed."
    return "\n\n".join(
        ["## Behavioural tests", intro, _table(["test", "kind", "cases", "failure rate", "a failing example"], rows), ""]
    )


def _attribution_md(report: dict) -> str:
    a = report["attribution"]
    if "skipped" in a:
        return f"## Attributions\n\nSkipped: {a['skipped']}\n"
    share = f"{100 * a['fraction']:.0f} %"
    text = (
        f"Gradient × input on the token vectors the head reads. Deletion check on {a['texts']} texts: deleting the "
        f"top-attributed {share} of tokens lowers the predicted class's probability by {a['mean_drop_top']:.4f} on "
        f"average, deleting a random {share} by {a['mean_drop_random']:.4f} ({'passes' if a['passes'] else 'fails'}; "
        f"top beats random in {100 * a['top_beats_random_share']:.0f} % of texts)."
    )
    return f"## Attributions\n\n{text}\n"


def _slice_table(rows: list[dict]) -> str:
    def cells(r: dict) -> list:
        if not r["examples"]:
            return [r["slice"], 0, "—", "—", "—"]
        accuracy = f"{100 * r['accuracy']:.1f} % [{100 * r['low']:.1f}, {100 * r['high']:.1f}]"
        return [r["slice"], r["examples"], accuracy, f"{r['ece']:.3f}", f"{100 * r['truncated_share']:.0f} %"]

    return _table(["slice", "examples", "accuracy [95 %]", "ECE", "truncated"], [cells(r) for r in rows])


def _example(test: dict) -> str:
    if not test["examples"]:
        return ""
    e = test["examples"][0]
    if "text" in e:
        return f"{e['text']} (expected {e['expected']}, got {e['predicted']} at {e['probability']})"
    return f"{e['changed'][-120:]} (p({e['label']}) {e['probability'][0]} → {e['probability'][1]})"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(header: list, rows: list[list]) -> str:
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(str, row)) + " |" for row in rows])


def _charts(report: dict) -> dict[str, bytes]:
    from matplotlib.figure import Figure  # not pyplot: no global backend switch for whoever imports rnnlab

    out = {}
    c = report["calibration"]
    fig = Figure(figsize=(10, 4.2))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, key in zip(axes, ("before", "after")):
        bins = c[f"reliability_{key}"]
        ax.bar(
            [b["confidence"] for b in bins],
            [b["accuracy"] for b in bins],
            width=1 / 15,
            alpha=0.75,
            edgecolor="k",
            label="accuracy",
        )
        ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
        for b in bins:
            ax.annotate(str(b["count"]), (b["confidence"], b["accuracy"]), ha="center", va="bottom", fontsize=7)
        ax.set(title=f"{key} scaling: ECE {c[key]['ece']:.3f}", xlabel="confidence (top label)", xlim=(0, 1), ylim=(0, 1.05))
    axes[0].set_ylabel("accuracy")
    axes[0].legend(loc="upper left", fontsize=8)
    out["reliability.png"] = _png(fig)

    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    for key in ("before", "after"):
        ax.hist(c[f"confidence_{key}"], bins=30, range=(0, 1), alpha=0.55, label=f"{key} scaling")
    ax.set(xlabel="confidence (top label)", ylabel="texts", title="Confidence histogram")
    ax.legend()
    out["confidence.png"] = _png(fig)

    rows = [r for r in report["slices"]["by_length"] if r["examples"]]
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    acc = np.array([r["accuracy"] for r in rows])
    err = np.array([[a - r["low"], r["high"] - a] for a, r in zip(acc, rows)]).T
    ax.errorbar(range(len(rows)), acc, yerr=err, fmt="o-", capsize=4)
    ax.set_xticks(range(len(rows)), [f"{r['slice']}\n(n={r['examples']})" for r in rows], fontsize=8)
    ax.set(ylabel="accuracy (95 % Wilson)", title="Accuracy by length (tokens before truncation)")
    out["length.png"] = _png(fig)
    return out


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def _html(report: dict, pictures: dict[str, bytes]) -> str:
    """The markdown's content as one HTML file: tables as <pre>-free tables, pictures inlined, no CDN."""
    body = []
    for block in to_markdown(report).split("\n\n"):
        block = block.strip()
        if block.startswith("|"):
            rows = [line.strip("|").split(" | ") for line in block.splitlines() if not line.startswith("|---")]
            cells = lambda row, tag: "".join(f"<{tag}>{html.escape(c.strip())}</{tag}>" for c in row)  # noqa: E731
            body.append(
                "<table><thead><tr>"
                + cells(rows[0], "th")
                + "</tr></thead><tbody>"
                + "".join("<tr>" + cells(r, "td") + "</tr>" for r in rows[1:])
                + "</tbody></table>"
            )
        elif block.startswith("!["):
            name = block[block.index("(") + 1 : block.index(")")]
            data = base64.b64encode(pictures[name]).decode()
            body.append(f'<img alt="{html.escape(name)}" src="data:image/png;base64,{data}">')
        elif block.startswith("#"):
            level = len(block) - len(block.lstrip("#"))
            body.append(f"<h{level}>{html.escape(block.lstrip('# '))}</h{level}>")
        elif block:
            body.append(f"<p>{html.escape(block)}</p>")
    style = (
        "body{font:14px/1.5 system-ui,sans-serif;max-width:1100px;margin:auto;padding:20px}"
        "table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top}"
        "img{max-width:100%}"
    )
    title = html.escape(f"Analysis of {report['run']}")
    head = f"<head><meta charset='utf-8'><title>{title}</title><style>{style}</style></head>"
    return f"<!doctype html><html lang='en'>{head}<body>{''.join(body)}</body></html>\n"
