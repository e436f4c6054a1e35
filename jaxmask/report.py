"""The evaluation's artefacts: report.md, metrics.json, the picture grid and the K-sweep plot.

``write_report(out_dir, results)`` takes ``evaluate.evaluate``'s dict. The
picture grid is drawn with Pillow (always installed); the privacy–utility
plot needs matplotlib (the optional ``jaxmask[report]`` extra) and is left
out, with a note in report.md, where it is missing.
"""

from __future__ import annotations

import io
import json
import math
import os
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from jaxmask import arguments, config_checks

GRID_FILE = "examples.png"
PLOT_FILE = "privacy_utility.png"
REPORT_FILES = ("report.md", "metrics.json", GRID_FILE, PLOT_FILE)   # what write_report writes into its folder
# The rows every evaluation writes besides the maskers (jaxmask/baselines.py, the Oracles of
# jaxmask/evaluation/rows.py; config_checks names both): a masker may not take one of their names.
BASELINE_ROWS = config_checks.BASELINE_ROWS + config_checks.ORACLE_ROWS


def check_model_names(names, flag: str = "models") -> None:
    """ValueError unless every masker name is a row of its own in the report: non-empty, given once,
    none of the baselines' or Oracles' names, nothing that breaks a table row ('|', control characters)."""
    seen = set()
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{flag}: a model name must be a non-empty string, got {name!r}")
        if name in BASELINE_ROWS:
            raise ValueError(f"{flag}: model name {name!r} is the name of a row every report has "
                             f"({', '.join(BASELINE_ROWS)}): the report would hold two {name!r} rows; rename it")
        if name in seen:
            raise ValueError(f"{flag}: model name {name!r} given twice: each model is a row of the report")
        if "|" in name or any(ord(c) < 32 or ord(c) == 127 for c in name):
            raise ValueError(f"{flag}: model name {name!r} holds '|' or a control character, which break the "
                             "report's tables: rename it")
        seen.add(name)

# (metric key, column title, kind): kind "acc" prints ±standard error, "sim" ±s.e. of the mean.
COLUMNS = (
    ("face_similarity", "Face similarity ↓", "sim"),
    ("task_accuracy", "Task accuracy ↑", "acc"),
    ("task_accuracy_retrained", "Task acc. (retrained) ↑", "acc"),
    ("reid_accuracy", "Re-ID ↓", "acc"),
    ("reid_accuracy_retrained", "Re-ID (retrained) ↓", "acc"),
    ("task_accuracy_mask_only", "Task acc. from mask alone", "acc"),
    ("reid_accuracy_mask_only", "Re-ID from mask alone ↓", "acc"),
    ("task_accuracy_hidden_part", "Task acc. from hidden part ↓", "acc"),
    ("reid_accuracy_hidden_part", "Re-ID from hidden part", "acc"),
    ("dlib_similarity", "dlib face similarity ↓", "plain"),
    ("revealed_fraction", "Revealed", "plain"),
    ("task_region_share", "In task region ↑", "plain"),
    ("task_region_revealed", "Task region revealed ↑", "plain"),
    ("identity_region_share", "In identity region ↓", "plain"),
)


def _cell(row: dict, key: str, kind: str) -> str:
    value = row.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if kind == "acc":
        return f"{value:.3f} ±{math.sqrt(max(value * (1 - value), 0) / max(row['n_test'], 1)):.3f}"
    if key == "revealed_fraction" and "revealed_fraction_min" in row:   # reveal=cap: per-image range
        return f"{value:.3f} ({row['revealed_fraction_min']:.3f}–{row['revealed_fraction_max']:.3f})"
    if key == "dlib_similarity" and "n_dlib" in row:
        return f"{value:.3f} (n={row['n_dlib']})"
    if kind == "sim" and f"{key}_se" in row:
        return f"{value:.3f} ±{row[key + '_se']:.3f}"
    return f"{value:.3f}"


def _columns(rows: list[dict]) -> list[tuple[str, str, str]]:
    return [c for c in COLUMNS if any(r.get(c[0]) is not None for r in rows)]


def _table(names: list[str], rows: list[dict], extra: list[tuple[str, list[str]]] = ()) -> list[str]:
    columns = _columns(rows)
    header = ["Method", *[title for title, _ in extra], *[c[1] for c in columns], "n test"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for i, (name, row) in enumerate(zip(names, rows)):
        cells = [name, *[values[i] for _, values in extra], *[_cell(row, c[0], c[2]) for c in columns],
                 str(row.get("n_test", "–"))]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _mode(model: dict) -> tuple[str, str, str, str, str, str]:
    values = model.get("values") or "?"
    gradient = model.get("gradient") or "?"
    adversarial = model.get("obfuscator_steps")
    return (model.get("game") or "paper", "yes" if model.get("mask_channel") else "no", values,
            "straight-through" if gradient == "straight_through" else gradient,
            "–" if adversarial is None else ("yes" if adversarial else "no"), model.get("reveal") or "exact")


def checks(results: dict[str, Any], ours: str = "Ours", baseline: str = "Non-adversarial"
           ) -> list[tuple[str, str, bool]]:
    """The issue's acceptance criteria for ``ours``: (criterion, numbers, passed).

    Judged with the retrained evaluator and attacker (networks trained on
    originals fail on any masked image, so their numbers do not separate methods).
    """
    methods, ref = results["methods"], results["reference"]
    if ours not in methods or "Original" not in methods:
        return []
    row, out = methods[ours], []
    task = "task_accuracy_retrained"
    gap = methods["Original"][task] - row[task]
    out.append(("task accuracy within 3 points of Original (retrained evaluator)",
                f"{row[task]:.3f} vs {methods['Original'][task]:.3f} (gap {100 * gap:.1f} points)", gap <= 0.03))
    reid = "reid_accuracy_retrained"
    if row.get(reid) is not None:
        for other in (baseline, "Gaussian Blur", "Random-K"):
            if other in methods:
                out.append((f"re-ID below {other} (retrained attacker)",
                            f"{row[reid]:.3f} vs {methods[other][reid]:.3f}", row[reid] < methods[other][reid]))
        chance = ref["identity_chance"]
        out.append(("re-ID at most twice chance (retrained attacker)",
                    f"{row[reid]:.3f} vs 2 × {chance:.3f} = {2 * chance:.3f}", row[reid] <= 2 * chance))
    # The floor: the task region alone for a capped reveal, the region padded to k for exact-k.
    floor = "Oracle-exact" if results.get("models", {}).get(ours, {}).get("reveal") == "cap" else "Oracle"
    if row.get(reid) is not None and floor in methods:
        oracle = methods[floor][reid]
        out.append((f"re-ID at most the {floor}'s + 0.05 (retrained attacker)",
                    f"{row[reid]:.3f} vs {oracle:.3f} + 0.05", row[reid] <= oracle + 0.05))
    if "Oracle-exact" in methods and row.get("revealed_fraction") is not None:
        area = methods["Oracle-exact"]["revealed_fraction"]      # the mean task-region fraction (within K)
        out.append(("revealed fraction ≤ 1.25 × the task region's",
                    f"{row['revealed_fraction']:.3f} vs 1.25 × {area:.3f} = {1.25 * area:.3f}",
                    row["revealed_fraction"] <= 1.25 * area))
    if row.get("task_region_share") is not None:
        out.append(("≥ 80% of revealed pixels inside the task region",
                    f"{100 * row['task_region_share']:.1f}%", row["task_region_share"] >= 0.8))
    per_class = row.get("task_region_revealed_per_class")
    if per_class:
        out.append(("task-region recall ≥ 0.9 in every class", "/".join(f"{v:.2f}" for v in per_class),
                    all(v >= 0.9 for v in per_class if not math.isnan(v))))
    if row.get("task_accuracy_mask_only") is not None and methods.get(floor, {}).get("task_accuracy_mask_only") is not None:
        bound = methods[floor]["task_accuracy_mask_only"] + 0.10
        out.append((f"label from the mask alone ≤ the {floor}'s + 0.10",
                    f"{row['task_accuracy_mask_only']:.3f} vs {bound:.3f}", row["task_accuracy_mask_only"] <= bound))
    bound = ref["task_chance"] + 0.10          # 0.35 for four classes
    for key, title in (("task_accuracy_hidden_part", "label from the hidden part (ResNet probe)"),
                       ("task_accuracy_hidden_part_plain", "label from the hidden part (plain CNN probe)")):
        if row.get(key) is not None:
            out.append((f"{title} ≤ chance + 0.10", f"{row[key]:.3f} vs {bound:.3f}", row[key] <= bound))
    return out


def selection_cell(selection: dict | None) -> str:
    """How model selection chose a bundle, and what its score read about identity
    (``evaluate.selection_record``): the stronger of a fresh re-ID probe and the game's identity
    adversary on the validation releases, the fresh probe alone, or nothing (no identity labels)."""
    if not selection or "selection_score" not in selection:
        return "none: not a selected bundle (a chosen or the last round)"
    text = f"validation score {selection['selection_score']:.3f}; identity: "
    if "probe_identity" not in selection:
        return text + ("none (the validation split has no identity labels, or selection.identity_probe "
                       "is off): the score cannot see a face")
    if "probe_identity_fresh" in selection and "accuracy_identity" in selection:
        return text + (f"re-ID on the validation releases {selection['probe_identity']:.3f}, the stronger of a "
                       f"fresh probe ({selection['probe_identity_fresh']:.3f}) and the game's identity "
                       f"adversary ({selection['accuracy_identity']:.3f})")
    return text + f"re-ID on the validation releases {selection['probe_identity']:.3f} (a fresh probe)"


def _fmt(value) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"


def probe_table(results: dict[str, Any]) -> list[str]:
    """The probes of jaxmask.probes per probed release: does anything but the reveal carry the label?"""
    methods = results["methods"]
    names = [n for n, row in methods.items()
             if any(k in row for k in ("task_accuracy_mask_only", "task_accuracy_hidden_part", "swap_follows_image"))]
    if not names:
        return []
    ref = results["reference"]
    lines = ["## Probes (fresh networks, never the training Φ)", "",
             f"Task chance {ref['task_chance']:.3f}. Recall: share of the task region revealed, overall and "
             "per class. Mask alone / hidden part: task accuracy of fresh networks on h alone and on "
             "concat((1 − h) ⊙ x, 1 − h) (ResNet, plain CNN). Swap: the retrained evaluator on image i under "
             "image j's mask, share read as y_i / as y_j. In training: the game's own adversaries on "
             "validation (complement on the hidden part / pattern on h), best member. Hidden, none left: "
             "the ResNet hidden-part probe on the test images that leave no task pixel hidden (their count): "
             "above chance there, the label is read from a code, not from missed task pixels.", "",
             "| Method | Revealed | Recall | Recall per class | Mask alone | Hidden (ResNet) | Hidden (plain) | "
             "Hidden, none left (n) | Swap → image / mask | In-training adversary (complement / pattern) | "
             "Re-ID (retrained) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in names:
        row = methods[name]
        per_class = "/".join(_fmt(v) for v in row.get("task_region_revealed_per_class", []))
        bins = row.get("task_accuracy_hidden_part_by_hidden_task_pixels") or []
        none_left = f"{_fmt(bins[0]['accuracy'])} ({bins[0]['count']})" if bins else "–"
        lines.append(
            f"| {name} | {_fmt(row.get('revealed_fraction'))} | {_fmt(row.get('task_region_revealed'))} | "
            f"{per_class or '–'} | "
            f"{_fmt(row.get('task_accuracy_mask_only'))} | {_fmt(row.get('task_accuracy_hidden_part'))} | "
            f"{_fmt(row.get('task_accuracy_hidden_part_plain'))} | {none_left} | "
            f"{_fmt(row.get('swap_follows_image'))} / {_fmt(row.get('swap_follows_mask'))} | "
            f"{_fmt(row.get('in_training_accuracy_complement'))} / {_fmt(row.get('in_training_accuracy_pattern'))} | "
            f"{_fmt(row.get('reid_accuracy_retrained'))} |")
    return lines + [""]


def markdown(results: dict[str, Any], figures: dict[str, str | None]) -> str:
    """report.md's text."""
    exp, ref, methods = results["experiment"], results["reference"], results["methods"]
    n_test = next(iter(methods.values()))["n_test"]
    n_train = next(iter(methods.values()))["n_train"]
    chance_id = ref.get("identity_chance")
    lines = [f"# jaxmask evaluation: {exp['dataset']} {exp['task']}", ""]
    lines += [f"{exp['image_size']}×{exp['image_size']} images, K = {exp['topk_fraction']:g} "
              f"(revealed pixels per image), {exp['num_classes']} task classes (chance "
              f"{ref['task_chance']:.3f}), " + (f"{exp['num_identities']} identities (chance {chance_id:.3f}), "
                                                if chance_id else "no identity labels, ")
              + f"{n_train} train / {n_test} test images. Accuracies ± binomial standard error; "
              "similarities ± standard error of the mean.", ""]
    lines += ["## Main table", "", *_table(list(methods), list(methods.values())), ""]
    lines += ["Protocol:", ""] + [f"* **{k}**: {v}" for k, v in results["protocol"].items()] + [""]
    criteria = checks(results)
    if criteria:
        lines += ["## Checks (Ours)", "", "| criterion | numbers | met |", "|---|---|---|"]
        lines += [f"| {c} | {v} | {'yes' if ok else '**no**'} |" for c, v, ok in criteria] + [""]
    models = results.get("models", {})
    if models:
        names = list(models)
        modes = [_mode(models[n]) for n in names]
        lines += ["## Maskers (ablation: game × mask channel × value mode × gradient rule × adversary × reveal)", ""]
        lines += _table(names, [methods[n] for n in names],
                        extra=[("game", [m[0] for m in modes]), ("mask channel", [m[1] for m in modes]),
                               ("values", [m[2] for m in modes]), ("gradient", [m[3] for m in modes]),
                               ("adversarial", [m[4] for m in modes]), ("reveal", [m[5] for m in modes])])
        lines += ["", "| Model | bundle | trained rounds | k | model selection (its identity term) |",
                  "|---|---|---|---|---|"]
        lines += [f"| {n} | `{m['path']}` | {m['step']} | {m['k']} | {selection_cell(m.get('selection'))} |"
                  for n, m in models.items()] + [""]
    lines += probe_table(results)
    sweep = results.get("k_sweep") or {}
    if sweep:
        keys = [k for k in ("task_accuracy", "task_accuracy_retrained", "reid_accuracy",
                            "reid_accuracy_retrained", "task_region_share", "task_region_revealed",
                            "identity_region_share")
                if any(k in p for points in sweep.values() for p in points)]
        lines += ["## K sweep (privacy–utility)", "", results["protocol"]["k_sweep"] + ".", ""]
        titles = {key: title for key, title, _ in COLUMNS}
        lines += ["| Method | K | " + " | ".join(titles.get(k, k) for k in keys) + " |",
                  "|" + "---|" * (len(keys) + 2)]
        for name, points in sweep.items():
            for p in points:
                lines.append(f"| {name} | {p['topk_fraction']:g} | "
                             + " | ".join(f"{p[k]:.3f}" if k in p else "–" for k in keys) + " |")
        lines.append("")
    lines += ["## Figures", ""]
    if figures.get("grid"):
        lines += [f"![examples]({figures['grid']})", "",
                  "Rows: test images. Columns: every release, then each masker's revealed pixels (white).", ""]
    if figures.get("plot"):
        lines += [f"![privacy–utility]({figures['plot']})", ""]
    else:
        lines += ["(privacy–utility plot not drawn: `pip install 'jaxmask[report]'` for matplotlib)", ""]
    lines += [f"Evaluation took {results.get('seconds', 0):.0f} s.", ""]
    return "\n".join(lines)


def _to_uint8(image: np.ndarray, scale: int) -> np.ndarray:
    image = np.asarray(image, np.float32)
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    image = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    return np.kron(image, np.ones((scale, scale, 1), np.uint8))


def picture_grid(examples: dict[str, Any], path: str, scale: int = 4) -> str:
    """PNG: one row per example; columns every release, then each masker's mask."""
    columns = [(name, images) for name, images in examples["released"].items()]
    columns += [(f"{name} mask", mask) for name, mask in examples["masks"].items()]
    rows = len(examples["original"])
    size = examples["original"].shape[1] * scale
    pad, title = 4, 28
    width = len(columns) * (size + pad) + pad
    canvas = Image.new("RGB", (width, title + rows * (size + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for c, (name, images) in enumerate(columns):
        x = pad + c * (size + pad)
        words, line = name.split(), ""
        text_lines = []
        for word in words:       # wrap titles to the column width
            if line and draw.textlength(f"{line} {word}") > size:
                text_lines.append(line)
                line = word
            else:
                line = f"{line} {word}".strip()
        text_lines.append(line)
        for i, text in enumerate(text_lines[:2]):
            draw.text((x, 2 + 12 * i), text, fill="black")
        for r in range(rows):
            tile = Image.fromarray(_to_uint8(images[r], scale))
            canvas.paste(tile, (x, title + pad + r * (size + pad)))
    canvas.save(path, format="PNG")
    return path


def privacy_utility_plot(results: dict[str, Any], path: str) -> str | None:
    """PNG over the K sweep (None without matplotlib or a sweep).

    Left: task accuracy vs re-identification accuracy (retrained networks when
    the sweep has them, else the networks trained on originals), with the
    fixed baselines as squares. Right (datasets with region masks): share of
    the revealed pixels in the identity region vs in the task region.
    """
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    sweep, methods, ref = results.get("k_sweep") or {}, results["methods"], results["reference"]
    points = [p for series in sweep.values() for p in series]
    if not points:
        return None
    retrained = any("reid_accuracy_retrained" in p for p in points)
    reid = "reid_accuracy_retrained" if retrained else "reid_accuracy"
    task = "task_accuracy_retrained" if retrained else "task_accuracy"
    has_reid = any(reid in p for p in points)
    has_regions = any("task_region_share" in p for p in points)
    panels = int(has_reid) + int(has_regions)
    if not panels:
        return None
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4.8), dpi=110, squeeze=False)
    axes = list(axes[0])
    colours = {name: f"C{i}" for i, name in enumerate([*sweep, "Original", "Block", "Gaussian Blur"])}

    def series(ax, x_key, y_key):
        for name, pts in sweep.items():
            xs, ys = [p[x_key] for p in pts], [p[y_key] for p in pts]
            ax.plot(xs, ys, marker="o", color=colours[name], label=name)
            for p, x, y in zip(pts, xs, ys):
                ax.annotate(f"K={p['topk_fraction']:g}", (x, y), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")

    if has_reid:
        ax = axes.pop(0)
        series(ax, reid, task)
        for name in ("Original", "Block", "Gaussian Blur"):
            if name in methods and methods[name].get(reid) is not None:
                ax.scatter([methods[name][reid]], [methods[name][task]], marker="s", s=50,
                           color=colours[name], label=name)
        if ref.get("identity_chance"):
            ax.axvline(ref["identity_chance"], color="grey", linestyle=":", label="identity chance")
        ax.axhline(ref["task_chance"], color="grey", linestyle="--", label="task chance")
        which = "retrained" if retrained else "trained on originals"
        ax.set_xlabel(f"re-identification accuracy ({which}) ↓")
        ax.set_ylabel(f"task accuracy ({which}) ↑")
        ax.set_title("privacy–utility over K")
        ax.legend(fontsize=7, loc="best")
        ax.grid(alpha=0.3)
    if has_regions:
        ax = axes.pop(0)
        series(ax, "identity_region_share", "task_region_share")
        ax.set_xlabel("share of revealed pixels in the identity region ↓")
        ax.set_ylabel("share of revealed pixels in the task region ↑")
        ax.set_title("where the reveal goes, over K")
        ax.legend(fontsize=7, loc="best")
        ax.grid(alpha=0.3)
    exp = results["experiment"]
    fig.suptitle(f"{exp['dataset']} {exp['task']} (trained at K = {exp['topk_fraction']:g})")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return path


def _jsonable(results: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in results.items() if k != "examples"}
    return json.loads(json.dumps(out, default=lambda x: x.item() if hasattr(x, "item") else list(x)))


def write_report(out_dir: str, results: dict[str, Any]) -> dict[str, str]:
    """Writes report.md, metrics.json, examples.png and (with matplotlib) privacy_utility.png.

    Returns {"report", "metrics", "grid", "plot"} paths (plot None without matplotlib). Each file is
    written to a temporary name and renamed (jaxmask.files.write_atomically): a stop in the middle
    leaves the earlier report's files whole, and a FIFO or link at a file's name is replaced, never
    written through; the temporary names are journaled in --out's lock when this process holds it.
    """
    from jaxmask import files, workdir
    out_dir = arguments.path(out_dir, "out_dir")
    check_model_names(list((results.get("models") or {})), "results['models']")
    os.makedirs(out_dir, exist_ok=True)
    journal = workdir.journal_of(out_dir)     # --out's lock (evaluate), the workdir's (run), or none

    def write(name: str, content: bytes | None) -> str | None:
        if content is None:
            return None
        path = os.path.join(out_dir, name)

        def save(tmp: str) -> None:
            with open(tmp, "wb") as f:
                f.write(content)
        files.write_atomically(path, save, journal)
        return path

    def png(draw) -> bytes | None:
        buffer = io.BytesIO()
        return buffer.getvalue() if draw(buffer) is not None else None

    grid = write(GRID_FILE, png(lambda f: picture_grid(results["examples"], f))) if results.get("examples") else None
    plot = write(PLOT_FILE, png(lambda f: privacy_utility_plot(results, f)))
    figures = {"grid": grid and os.path.basename(grid), "plot": plot and os.path.basename(plot)}
    report_path = write("report.md", markdown(results, figures).encode())
    metrics_path = write("metrics.json", (json.dumps(_jsonable(results), indent=2) + "\n").encode())
    return {"report": report_path, "metrics": metrics_path, "grid": grid, "plot": plot}


def check_report_folder(out: str, overwrite: bool, flag: str = "--out") -> None:
    """Refuses (up front) a folder holding report files of an earlier evaluation, unless ``overwrite``."""
    found = [name for name in REPORT_FILES if os.path.lexists(os.path.join(out, name))]
    if found and not overwrite:
        raise ValueError(f"{flag} {out} holds the report of an earlier evaluation ({', '.join(found)}): pass "
                         f"--overwrite to replace it, or another {flag}")
