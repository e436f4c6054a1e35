"""The second tour of bad and hostile inputs (docs/reliability.md, "The second tour"): a script.

    PYTHONPATH=/path/to/checkout JAXMASK_TOUR_REPO=/path/to/checkout \
        python tests/reliability_tour2.py OUT.json [case-substring ...]
    python tests/reliability_tour2.py --table BEFORE.json AFTER.json     # the markdown table

The kinds were written down before any fix, derived from the six rules of the
second pass (issue 18): each rule is a class of fault, and the kinds walk the
ways into it. The image-format kinds are derived from Pillow itself: every
mode in ``PIL.Image.MODES`` that some registered writer stores and reads back
unchanged, and every format in ``PIL.Image.SAVE_ALL`` (those that hold several
frames). Each case runs in a scratch folder like the first tour
(tests/reliability_tour.py: forked children, the checkout on PYTHONPATH), and
records the seconds its command took: for the config errors, the time to
the error (rule 5 asks for ≤ 10 s on 2 cores).

Verdicts: **ok**, or **BAD** with the fault class: traceback, silent wrong,
data loss, bypass (a check that could be switched off), late (an error
after long work), leftover.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reliability_tour as tour  # noqa: E402
from reliability_tour import (  # noqa: E402
    FAST, REPO, SMOKE, Context, cli_child, last_line, listed, outputs, rgb, save_image, traceback_in)

CASES: list[tuple[str, str, str, str, object]] = []     # (rule, area, kind, command, function)
FOUND = set()        # kinds the issue itself reported (reproduced on babce54)


def case(rule: str, area: str, kind: str, command: str, found: bool = False):
    def register(fn):
        CASES.append((rule, area, kind, command, fn))
        if found:
            FOUND.add(kind)
        return fn
    return register


def timed(fn):
    """(result, seconds) of ``fn()``."""
    start = time.time()
    result = fn()
    return result, time.time() - start


def refused(result, seconds=None, limit=10.0, need=()):
    """A one-line refusal (non-zero exit, no traceback), within ``limit`` s, naming each of ``need``."""
    code, log, _ = result
    if code == "timeout":
        return f"still running after the time limit: not refused up front (late){_s(seconds)}", False
    if traceback_in(log):
        return f"exit {code}, traceback: {last_line(log)}{_s(seconds)}", False
    line = last_line(log)
    ok = code not in (0, 99)
    missing = [n for n in need if n.lower() not in log.lower()]
    if ok and missing:
        ok = False
        line += f" (does not name {missing})"
    if ok and seconds is not None and seconds > limit:
        ok = False
        line += f" (late: {seconds:.0f} s > {limit:.0f} s)"
    return f"exit {code}: {line}{_s(seconds)}", ok


def _s(seconds):
    return "" if seconds is None else f" [{seconds:.1f} s]"


# ---- Fixtures -----------------------------------------------------------------------------

def make_checkpoint(workdir, overrides=(), step=2):
    """A checkpoint of round ``step`` written by the API (main's too), config = smoke + FAST + overrides,
    and the config.json a training writes beside it."""
    import grain
    import jax
    from jaxmask import build, checkpoint
    config = smoke_config(overrides)
    rng = np.random.default_rng(0)

    def fill(path, x):     # random parameters, positive BatchNorm variances, a fresh optimiser state
        name = jax.tree_util.keystr(path)
        if x.dtype.kind != "f" or "opt_state" in name:
            return np.asarray(x)
        if "var" in name:
            return rng.uniform(0.5, 1.5, x.shape).astype(x.dtype)
        return (0.1 * rng.normal(size=x.shape)).astype(x.dtype)
    state = jax.tree_util.tree_map_with_path(fill, build.from_config(config).template()).replace(step=np.int32(step))
    it = iter(grain.MapDataset.range(100).to_iter_dataset().batch(4))
    with checkpoint.TrainCheckpoints(workdir, build.from_config(config)) as checkpoints:
        checkpoints.save(step, state, it)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2))
    with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
        for s in range(1, step + 1):
            f.write(json.dumps({"step": s, "split": "train", "predictor_loss": 1.0}) + "\n")
        f.write(json.dumps({"step": step, "split": "validation", "accuracy_revealed": 0.5}) + "\n")


def smoke_config(overrides=()):
    """configs/synth_hair.py:smoke with FAST's fields and ``overrides`` ('a.b=value' strings)."""
    import ast
    from jaxmask import config_files
    config = config_files.load(SMOKE.split(":")[0], "smoke")
    for flag in [*FAST, *overrides]:
        name, value = flag.removeprefix("--config.").split("=", 1)
        node = config
        *parents, last = name.split(".")
        for p in parents:
            node = node[p]
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parsed = value
        if isinstance(parsed, tuple) and isinstance(node[last], tuple):
            parsed = tuple(parsed)
        with node.unlocked() if hasattr(node, "unlocked") else _nullcontext():
            node[last] = parsed
    return config


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def train_cli(ctx, workdir, *extra, timeout=300):
    return ctx.cli("train", "--config", SMOKE, "--workdir", workdir, *FAST, *extra, timeout=timeout)


def mask_cli(ctx, inp, out, *extra, bundle="bundle", timeout=300):
    return ctx.cli("mask", "--model", ctx.shared[bundle], "--input", inp, "--output", out, "--noprogress",
                   *extra, timeout=timeout)


def copy_bundle(ctx, name="bundle"):
    shutil.copytree(ctx.shared[name], ctx.path("B"))
    return ctx.path("B")


def read_manifest(bundle):
    return json.load(open(os.path.join(bundle, "manifest.json")))


def write_manifest(bundle, manifest):
    json.dump(manifest, open(os.path.join(bundle, "manifest.json"), "w"), indent=1)


def resign(manifest):
    """The manifest's own checksum recomputed (what an editor who knows the rule would do)."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    manifest["manifest_sha256"] = hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return manifest


def released_share(out_dir):
    """(revealed, total) over every released image in ``out_dir``."""
    n = total = 0
    for o in outputs(out_dir):
        if o.endswith(".png") and not o.endswith(".mask.png"):
            a, b = tour.revealed(os.path.join(out_dir, o))
            n, total = n + a, total + b
    return n, total


def png16(height, width, color_type, channels, seed=0):
    """A 16-bit-per-sample PNG written by hand (Pillow cannot write 16-bit colour PNGs)."""
    rng = np.random.default_rng(seed)
    rows = [b"\x00" + rng.integers(256, 65535, width * channels).astype(">u2").tobytes() for _ in range(height)]

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b""))


# ---- Rule 1: integrity is all or nothing ----------------------------------------------------

def _bundle_case(ctx, edit, name="bundle"):
    bundle = copy_bundle(ctx, name)
    manifest = read_manifest(bundle)
    edit(manifest)
    write_manifest(bundle, manifest)
    save_image(ctx.path("in/a.png"), rgb(32, 32))
    (code, log, rss), seconds = timed(lambda: ctx.cli("mask", "--model", bundle, "--input", ctx.path("in"),
                                                      "--output", ctx.path("out"), "--noprogress"))
    what, ok = refused((code, log, rss))
    got = outputs(ctx.path("out"))
    if got:
        n, total = released_share(ctx.path("out"))
        what += f"; released {n}/{total} pixels (BYPASS)"
        ok = False
    return what, ok


def _downgrade(manifest):
    manifest["format_version"] = 1
    manifest.pop("manifest_sha256", None)
    manifest["k"], manifest["topk_fraction"] = 1024, 1.0


@case("1", "bundle", "manifest downgraded: format_version 1, manifest_sha256 deleted, k=1024, topk_fraction=1.0",
      "mask --model B", found=True)
def _(ctx):
    return _bundle_case(ctx, _downgrade, "bundle32")


@case("1", "bundle", "format_version true (read as 1), checksum deleted, k=1024, topk_fraction=1.0",
      "mask --model B", found=True)
def _(ctx):
    return _bundle_case(ctx, lambda m: (_downgrade(m), m.update(format_version=True)), "bundle32")


@case("1", "bundle", "format_version 1.0 (a float), checksum deleted, k=1024, topk_fraction=1.0", "mask --model B")
def _(ctx):
    return _bundle_case(ctx, lambda m: (_downgrade(m), m.update(format_version=1.0)), "bundle32")


@case("1", "bundle", "format_version 1 with its manifest_sha256 kept, k=1024, topk_fraction=1.0 (a check it carries)",
      "mask --model B")
def _(ctx):
    def edit(m):
        m["format_version"], m["k"], m["topk_fraction"] = 1, 1024, 1.0
    return _bundle_case(ctx, edit, "bundle32")


@case("1", "bundle", "format_version 1, checksum deleted, config.reveal edited to 'cap' (changes the release)",
      "mask --model B")
def _(ctx):
    def edit(m):
        m["format_version"] = 1
        m.pop("manifest_sha256")
        m["config"]["reveal"], m["config"]["cap_threshold"] = "cap", 0.99
    return _bundle_case(ctx, edit)


@case("1", "bundle", "version-1 bundle (no manifest checksum), nothing edited: a missing check, no flag",
      "mask --model B")
def _(ctx):
    def edit(m):
        m["format_version"] = 1
        m.pop("manifest_sha256")
    return _bundle_case(ctx, edit)


@case("1", "bundle", "manifest_sha256 deleted (format_version 2 kept)", "mask --model B")
def _(ctx):
    return _bundle_case(ctx, lambda m: m.pop("manifest_sha256"))


@case("1", "bundle", "format_version '2' (a string), checksum deleted", "mask --model B")
def _(ctx):
    return _bundle_case(ctx, lambda m: (m.pop("manifest_sha256"), m.update(format_version="2")))


@case("1", "bundle", "files entry without its sha256 (bytes kept), manifest re-signed", "mask --model B")
def _(ctx):
    return _bundle_case(ctx, lambda m: (m["files"]["masker.npz"].pop("sha256"), resign(m)))


@case("1", "bundle", "files entry without its byte count, npz grown by appended bytes, manifest re-signed",
      "mask --model B")
def _(ctx):
    bundle = copy_bundle(ctx)
    manifest = read_manifest(bundle)
    manifest["files"]["masker.npz"].pop("bytes")
    write_manifest(bundle, resign(manifest))
    with open(os.path.join(bundle, "masker.npz"), "ab") as f:
        f.write(b"\0" * 16)
    save_image(ctx.path("in/a.png"), rgb(16, 16))
    return refused(ctx.cli("mask", "--model", bundle, "--input", ctx.path("in"), "--output", ctx.path("out"),
                           "--noprogress"))


# Checkpoints.

def _state_files(workdir, step=2):
    return sorted(os.path.join(d, f) for d, _, fs in os.walk(os.path.join(workdir, "checkpoints", str(step), "state"))
                  for f in fs if os.path.getsize(os.path.join(d, f)) > 64)


@case("1", "checkpoint", "checksums/ deleted and one byte of the state flipped (8 trials)", "export --workdir W",
      found=True)
def _(ctx):
    ctx.run(lambda: make_checkpoint(ctx.path("W")))
    ctx.cli("export", "--workdir", ctx.path("W"), "--out", ctx.path("B_ref"))
    reference = open(ctx.path("B_ref/masker.npz"), "rb").read()
    refused_n = harmless = damaged = 0
    files = _state_files(ctx.path("W"))
    for trial in range(8):
        shutil.copytree(ctx.path("W"), ctx.path(f"W{trial}"))
        shutil.rmtree(ctx.path(f"W{trial}/checkpoints/2/checksums"))
        path = files[trial % len(files)].replace(ctx.path("W"), ctx.path(f"W{trial}"), 1)
        data = bytearray(open(path, "rb").read())
        data[np.random.default_rng(trial).integers(len(data) // 4, len(data))] ^= 0x10
        open(path, "wb").write(bytes(data))
        code, log, _ = ctx.cli("export", "--workdir", ctx.path(f"W{trial}"), "--out", ctx.path(f"B{trial}"))
        if code == 0:
            same = open(ctx.path(f"B{trial}/masker.npz"), "rb").read() == reference
            harmless += same
            damaged += not same
        elif not traceback_in(log):
            refused_n += 1
    return (f"{refused_n}/8 refused with one line, {harmless}/8 exported although unverified (identical), "
            f"{damaged}/8 exported DIFFERENT parameters", refused_n == 8)


@case("1", "checkpoint", "checksums/ deleted (contents intact): export without a flag", "export --workdir W")
def _(ctx):
    ctx.run(lambda: make_checkpoint(ctx.path("W")))
    shutil.rmtree(ctx.path("W/checkpoints/2/checksums"))
    what, ok = refused(ctx.cli("export", "--workdir", ctx.path("W"), "--out", ctx.path("B")))
    return what, ok and not os.path.exists(ctx.path("B"))


@case("1", "checkpoint", "checksums/ deleted (contents intact): training resumes from it", "train --workdir W")
def _(ctx):
    ctx.run(lambda: make_checkpoint(ctx.path("W")))
    shutil.rmtree(ctx.path("W/checkpoints/2/checksums"))
    result, seconds = timed(lambda: train_cli(ctx, ctx.path("W"), timeout=120))
    return refused(result, seconds)


@case("1", "checkpoint", "checksums/ holds an empty table ({}): export", "export --workdir W")
def _(ctx):
    ctx.run(lambda: make_checkpoint(ctx.path("W")))
    folder = ctx.path("W/checkpoints/2/checksums")
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if os.path.isfile(path) and not name.startswith("_"):
            open(path, "w").write("{}")
    return refused(ctx.cli("export", "--workdir", ctx.path("W"), "--out", ctx.path("B")))


@case("1", "checkpoint", "config/ item of the checkpoint deleted: export", "export --workdir W")
def _(ctx):
    ctx.run(lambda: make_checkpoint(ctx.path("W")))
    shutil.rmtree(ctx.path("W/checkpoints/2/config"))
    return refused(ctx.cli("export", "--workdir", ctx.path("W"), "--out", ctx.path("B")))


# ---- Rule 6 (metrics.jsonl half): a torn last line, corruption elsewhere ----------------------

def _metrics_case(ctx, content: bytes, command: str, expect_ok: bool):
    ctx.run(lambda: make_checkpoint(ctx.path("W")))
    open(ctx.path("W/metrics.jsonl"), "wb").write(content)
    if command == "export":
        code, log, _ = ctx.cli("export", "--workdir", ctx.path("W"), "--out", ctx.path("B"))
    else:
        code, log, _ = train_cli(ctx, ctx.path("W"), timeout=200)
    if traceback_in(log):
        return f"exit {code}, traceback: {last_line(log)}", False
    names_file = "metrics.jsonl" in log
    if expect_ok:
        return (f"exit {code}; warning names the file: {names_file}: {last_line(log)}",
                code == 0 and names_file)
    names_line = ":2" in log or "line 2" in log
    return f"exit {code}: {last_line(log)}", code not in (0, 99) and names_file and names_line


_GOOD = (json.dumps({"step": 1, "split": "train", "predictor_loss": 1.0}) + "\n").encode()
_TORN = b'{"step": 2, "split": "validation", "accuracy_revealed": 0.5, "name": "unterminated'


@case("6", "checkpoint", "metrics.jsonl with a torn last line (crash mid-write): export", "export --workdir W", found=True)
def _(ctx):
    return _metrics_case(ctx, _GOOD + _TORN, "export", True)


@case("6", "checkpoint", "metrics.jsonl with a torn last line (crash mid-write): resume", "train --workdir W", found=True)
def _(ctx):
    return _metrics_case(ctx, _GOOD + _TORN, "train", True)


@case("6", "checkpoint", "metrics.jsonl torn last line of invalid UTF-8 bytes: export", "export --workdir W")
def _(ctx):
    return _metrics_case(ctx, _GOOD + b'{"step": 2, "name": "\xff\xfe', "export", True)


@case("6", "checkpoint", "metrics.jsonl corrupt in the middle (line 2 of 3): export", "export --workdir W")
def _(ctx):
    return _metrics_case(ctx, _GOOD + b"{garbage\n" + _GOOD, "export", False)


@case("6", "checkpoint", "metrics.jsonl line 2 is JSON but not an object ([1, 2]): export", "export --workdir W")
def _(ctx):
    return _metrics_case(ctx, _GOOD + b"[1, 2]\n" + _GOOD, "export", False)


@case("6", "checkpoint", "metrics.jsonl corrupt in the middle (line 2 of 3): resume", "train --workdir W")
def _(ctx):
    return _metrics_case(ctx, _GOOD + b"{garbage\n" + _GOOD, "train", False)


# ---- Rule 2: one writer per output --------------------------------------------------------------

def _holder_named(log, pid):
    return str(pid) in log


@case("2", "lock", "two `mask` runs into one output folder at once (K=0.35 as trained and K=0.5, 200 images)",
      "mask & mask --topk_fraction 0.5 (same --output)", found=True)
def _(ctx):
    for i in range(200):
        save_image(ctx.path(f"in/{i:03d}.png"), rgb(256, 256, i))
    # Started together, as two users (or two jobs of a script) would.
    a = ctx.start(cli_child(["mask", "--model", ctx.shared["bundle"], "--input", ctx.path("in"), "--output",
                             ctx.path("out"), "--noprogress", "--batch_size", "4"]))
    b = ctx.start(cli_child(["mask", "--model", ctx.shared["bundle"], "--input", ctx.path("in"), "--output",
                             ctx.path("out"), "--noprogress", "--batch_size", "4", "--topk_fraction", "0.5"]))
    (ca, la, _), (cb, lb, _) = a.wait(), b.wait()
    shares = sorted({round(tour.revealed(os.path.join(ctx.path("out"), o))[0] / (256 * 256), 2)
                     for o in outputs(ctx.path("out")) if o.endswith(".png")})
    named = _holder_named(lb, a.pid) or _holder_named(la, b.pid)
    ok = (ca == 0) != (cb == 0) and len(shares) == 1 and named and not traceback_in(la + lb)
    return f"exits {ca}, {cb}; K in the folder: {shares}; holder named: {named}: {last_line(lb)}", ok


@case("2", "lock", "two `export` runs to one --out at once", "export & export (same --out)")
def _(ctx):
    ctx.run(lambda: make_checkpoint(ctx.path("W")))
    a = ctx.start(cli_child(["export", "--workdir", ctx.path("W"), "--out", ctx.path("B")]))
    b = ctx.start(cli_child(["export", "--workdir", ctx.path("W"), "--out", ctx.path("B")]))
    (ca, la, _), (cb, lb, _) = a.wait(), b.wait()
    left = [n for n in os.listdir(ctx.path()) if n.startswith(".B")]
    tb = traceback_in(la + lb)
    named = _holder_named(lb, a.pid) or _holder_named(la, b.pid)
    # The second is refused either while the first writes (naming it) or after (a bundle it did not write).
    exists = "--overwrite" in la + lb
    ok = not tb and not left and (ca == 0) != (cb == 0) and (named or exists)
    return (f"exits {ca}, {cb}; traceback: {tb}; refusal names the holder: {named}, or the existing bundle: "
            f"{exists}; left beside --out: {left}", ok)


def _second_writer(ctx, argv_a, argv_b, ready, timeout=60):
    """Starts A, waits for ``ready()``, starts B: ok when B is refused naming A while A runs."""
    a = ctx.start(cli_child(argv_a))
    deadline = time.time() + 120
    while time.time() < deadline and not ready():
        time.sleep(0.05)
    start = time.time()
    code, log, _ = ctx.start(cli_child(argv_b)).wait(timeout)
    seconds = time.time() - start
    os.kill(a.pid, signal.SIGKILL)
    a.wait()
    if code == "timeout":
        return f"second writer not refused within {timeout} s: two writers in one output", False
    what, ok = refused((code, log, 0), seconds)
    named = _holder_named(log, a.pid)
    return what + f"; holder pid named: {named}", ok and named


@case("2", "lock", "two `evaluate` runs into one --out at once", "evaluate & evaluate (same --out)")
def _(ctx):
    argv = ["evaluate", "--config", SMOKE, "--models", f"A={ctx.shared['bundle32']}", "--out", ctx.path("R"),
            "--eval.network.epochs=1"]
    return _second_writer(ctx, argv, argv, lambda: os.path.isdir(ctx.path("R")))


@case("2", "lock", "two `run` on one workdir at once", "run & run (same --workdir)")
def _(ctx):
    argv = ["run", "--config", SMOKE, "--workdir", ctx.path("R"), *FAST, "--eval.network.epochs=1"]
    return _second_writer(ctx, argv, argv, lambda: os.path.exists(ctx.path("R/ours/checkpoints")))


@case("2", "lock", "two `train` on one workdir: the refusal names the holder (pid, host)", "train & train")
def _(ctx):
    argv = ["train", "--config", SMOKE, "--workdir", ctx.path("W"), *FAST, "--config.num_rounds=40"]
    return _second_writer(ctx, argv, argv, lambda: os.path.exists(ctx.path("W/checkpoints")))


@case("2", "lock", "stale lock of a killed `mask` (kill -9) in the output folder, then rerun", "mask; kill -9; mask")
def _(ctx):
    for i in range(40):
        save_image(ctx.path(f"in/{i:02d}.png"), rgb(64, 64, i))
    child = ctx.start(cli_child(["mask", "--model", ctx.shared["bundle"], "--input", ctx.path("in"), "--output",
                                 ctx.path("out"), "--batch_size", "4", "--noprogress"]))
    deadline = time.time() + 60
    while time.time() < deadline and len(outputs(ctx.path("out"))) < 4:
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    code, log, _ = mask_cli(ctx, ctx.path("in"), ctx.path("out"))
    images = [o for o in outputs(ctx.path("out")) if o.endswith(".png") and not o.startswith(".")]
    return f"rerun exit {code}; {len(images)}/40 images in the folder: {last_line(log)}", code == 0 and len(images) == 40


@case("2", "lock", "export over a bundle written by an earlier export, without --overwrite", "export --out B (exists)")
def _(ctx):
    ctx.run(lambda: make_checkpoint(ctx.path("W")))
    ctx.cli("export", "--workdir", ctx.path("W"), "--out", ctx.path("B"))
    before = open(ctx.path("B/manifest.json"), "rb").read()
    time.sleep(1.1)       # a new export has another `created` time
    code, log, _ = ctx.cli("export", "--workdir", ctx.path("W"), "--out", ctx.path("B"))
    same = open(ctx.path("B/manifest.json"), "rb").read() == before
    what, ok = refused((code, log, 0))
    return what + f"; existing bundle {'kept' if same else 'REPLACED'}", ok and same


@case("2", "lock", "evaluate --out holding an earlier report.md, without --overwrite", "evaluate --out R (has report.md)")
def _(ctx):
    os.makedirs(ctx.path("R"))
    open(ctx.path("R/report.md"), "w").write("an earlier report\n")
    result, seconds = timed(lambda: ctx.cli("evaluate", "--config", SMOKE, "--models", f"A={ctx.shared['bundle32']}",
                                            "--out", ctx.path("R"), "--eval.network.epochs=1", timeout=30))
    what, ok = refused(result, seconds)
    kept = open(ctx.path("R/report.md")).read() == "an earlier report\n"
    return what + f"; report.md {'kept' if kept else 'REPLACED'}", ok and kept


# ---- Rule 3: every input format handled faithfully or refused by name -------------------------

PREFERRED = ("PNG", "TIFF", "BMP", "JPEG")
LOSSY = ("JPEG", "MPO", "WEBP")


def storable_modes():
    """{mode: format} for every mode of Image.MODES that a registered writer stores and reads back as itself."""
    Image.init()
    found = {}
    for mode in Image.MODES:
        for fmt in [*PREFERRED, *sorted(set(Image.SAVE) - set(PREFERRED))]:
            if fmt in LOSSY:
                continue
            try:
                buffer = io.BytesIO()
                Image.new(mode, (4, 4)).save(buffer, format=fmt)
                buffer.seek(0)
                with Image.open(buffer) as back:
                    back.load()
                    if back.mode == mode:
                        found[mode] = fmt
                        break
            except Exception:
                continue
    return found


def mode_image(mode, size=(20, 20), seed=0):
    """An image of ``mode`` with no zero sample (so 'hidden = 0' is never confused with a pixel)."""
    rng = np.random.default_rng(seed)
    height, width = size[1], size[0]
    if mode == "1":
        return Image.new("1", size, 1)
    if mode == "P" or mode == "PA":
        image = Image.fromarray(rng.integers(1, 16, (height, width), dtype=np.uint8), "L").convert("P")
        palette = [0, 0, 0] + [int(v) for v in rng.integers(40, 256, 3 * 255)]
        image.putpalette(palette)
        if mode == "PA":
            image = image.convert("PA")
            a = np.array(image)
            a[..., 1] = 200
            image = Image.fromarray(a, "PA")
            image.putpalette(palette)
        return image
    if mode == "F":
        return Image.fromarray(rng.uniform(0.05, 1.0, (height, width)).astype(np.float32), "F")
    if mode == "I":
        return Image.fromarray(rng.integers(1, 60000, (height, width)).astype(np.int32), "I")
    if mode.startswith("I;16"):
        dtype = ">u2" if mode == "I;16B" else "<u2"
        return Image.frombytes(mode, size, rng.integers(1, 65535, (height, width)).astype(dtype).tobytes())
    bands = Image.getmodebands(mode)
    data = rng.integers(1, 256, (height, width, bands), dtype=np.uint8)
    return Image.frombytes(mode, size, data.tobytes())


_SAME_MODE = {"I;16L": "I;16"}     # two names of one layout (little-endian 16-bit)


def _judge_black(in_path, out_path, k):
    src = Image.open(in_path)
    out = Image.open(out_path)
    if _SAME_MODE.get(out.mode, out.mode) != _SAME_MODE.get(src.mode, src.mode):
        return f"written as mode {out.mode}, the input is {src.mode} (SILENT WRONG)", False
    if src.mode in ("P", "PA"):
        a, b = np.array(src.convert("RGBA")), np.array(out.convert("RGBA"))
        hidden = (b[..., :3] == 0).all(-1)
    else:
        a, b = np.array(src), np.array(out)
        a = a.reshape(a.shape[:2] + (-1,))
        b = b.reshape(b.shape[:2] + (-1,))
        hidden = (b == 0).all(-1)
    same = (a == b).all(-1)
    n = int(same.sum())
    if not (same | hidden).all():
        return f"{int((~(same | hidden)).sum())} pixel(s) neither original nor hidden (SILENT WRONG)", False
    return f"mode {out.mode} kept, revealed {n}/{a.shape[0] * a.shape[1]} (want {k})", n == k


def _bundle_k(ctx, pixels=400):
    """round(K·H·W) at the test images' 20×20 for the tour's bundle (trained K: the smoke config's)."""
    return round(read_manifest(ctx.shared["bundle"])["topk_fraction"] * pixels)


def _format_case(ctx, name, write, fill, judge=None, k=None):
    k = _bundle_k(ctx) if k is None else k
    os.makedirs(ctx.path("in"), exist_ok=True)
    write(ctx.path("in", name))
    extra = ["--fill", "black"] if fill == "black" else []
    code, log, _ = mask_cli(ctx, ctx.path("in"), ctx.path("out"), *extra)
    got = [o for o in outputs(ctx.path("out")) if not o.startswith(".")]
    if traceback_in(log):
        return f"exit {code}, traceback: {last_line(log)}", False
    if not got:
        reason = [line.strip() for line in log.splitlines() if line.startswith("  ")]
        ok = code == 1 and listed(log, name)
        return f"exit {code}; {'listed: ' + reason[0][:140] if reason else 'NOT listed, nothing written'}", ok
    out_path = os.path.join(ctx.path("out"), got[0])
    if judge is not None:
        what, ok = judge(ctx.path("in", name), out_path)
    elif fill == "black":
        what, ok = _judge_black(ctx.path("in", name), out_path, k)
    else:
        n, total = tour.revealed(out_path)
        mode = Image.open(out_path).mode
        what, ok = f"{mode} PNG, revealed {n}/{total} (want {k})", n == k and mode in ("RGBA", "LA")
    return f"exit {code}; {got[0]}: {what}", ok and code == 0


def _mode_writer(mode, fmt):
    return lambda path: mode_image(mode).save(path, format=fmt)


_EXT = {"PNG": "png", "TIFF": "tif", "BMP": "bmp", "JPEG": "jpg", "GIF": "gif", "WEBP": "webp", "PPM": "ppm"}

for _mode, _fmt in storable_modes().items():
    _name = f"mode_{_mode.replace(';', '_')}.{_EXT.get(_fmt, _fmt.lower())}"
    for _fill in ("black", "alpha"):
        case("3", "format", f"Pillow mode {_mode} ({_fmt}), --fill {_fill}", f"mask --fill {_fill}")(
            lambda ctx, n=_name, w=_mode_writer(_mode, _fmt), f=_fill: _format_case(ctx, n, w, f))


for _label, _ct, _ch, _found in [("RGB", 2, 3, True), ("RGBA", 6, 4, False), ("LA", 4, 2, False)]:
    case("3", "format", f"16-bit {_label} PNG (Pillow decodes it to 8 bits), --fill black", "mask --fill black",
         found=_found)(lambda ctx, ct=_ct, ch=_ch, label=_label: _format_case(
             ctx, f"deep_{label}.png", lambda path: open(path, "wb").write(png16(20, 20, ct, ch)), "black",
             judge=lambda i, o: _judge_deep(i, o)))


def _judge_deep(in_path, out_path):
    with open(out_path, "rb") as f:
        header = f.read(32)
    depth = header[24] if header[:8] == b"\x89PNG\r\n\x1a\n" else None
    return f"written with {depth}-bit samples (the input has 16)", depth == 16


def _frames_writer(fmt, count=3):
    def write(path):
        frames = [Image.fromarray(rgb(20, 20, i)) for i in range(count)]
        if fmt == "GIF":
            frames = [f.convert("P") for f in frames]
        frames[0].save(path, format=fmt, save_all=True, append_images=frames[1:])
    return write


def _multi_frame_formats():
    """Formats of Image.SAVE_ALL that write several frames and read them back (n_frames > 1)."""
    Image.init()
    found = []
    for fmt in sorted(Image.SAVE_ALL):
        try:
            buffer = io.BytesIO()
            _frames_writer(fmt)(buffer)
            buffer.seek(0)
            with Image.open(buffer) as back:
                if getattr(back, "n_frames", 1) > 1:
                    found.append(fmt)
        except Exception:
            continue
    return found


for _fmt in _multi_frame_formats():
    _ext = {"PNG": "apng.png", "TIFF": "tif", "GIF": "gif", "WEBP": "webp", "MPO": "mpo.jpg"}.get(_fmt, _fmt.lower())
    for _fill in ("alpha", "black"):
        case("3", "format", f"3-frame {_fmt} (Image.SAVE_ALL), --fill {_fill}", f"mask --fill {_fill}",
             found=_fmt == "GIF" and _fill == "alpha")(
            lambda ctx, e=_ext, w=_frames_writer(_fmt), f=_fill: _frames_case(ctx, f"anim.{e}", w, f))


def _frames_case(ctx, name, write, fill):
    os.makedirs(ctx.path("in"), exist_ok=True)
    write(ctx.path("in", name))
    extra = ["--fill", "black"] if fill == "black" else []
    code, log, _ = mask_cli(ctx, ctx.path("in"), ctx.path("out"), *extra)
    got = [o for o in outputs(ctx.path("out")) if not o.startswith(".")]
    if traceback_in(log):
        return f"exit {code}, traceback: {last_line(log)}", False
    if got:
        with Image.open(os.path.join(ctx.path("out"), got[0])) as out:
            frames = getattr(out, "n_frames", 1)
        return f"exit {code}; wrote {got[0]} with {frames} of 3 frames", frames == 3
    reason = [line.strip() for line in log.splitlines() if line.startswith("  ")]
    return f"exit {code}; {'listed: ' + reason[0][:140] if reason else 'NOT listed'}", code == 1 and listed(log, name)


def _float_tif(values):
    return lambda path: Image.fromarray(values.astype(np.float32), "F").save(path, format="TIFF")


_F = np.random.default_rng(0).uniform(0.1, 0.9, (20, 20))
for _label, _values in [("NaN", np.where(np.arange(400).reshape(20, 20) % 7 == 0, np.nan, _F)),
                        ("+inf", np.where(np.arange(400).reshape(20, 20) % 7 == 0, np.inf, _F)),
                        ("values 0–255 (not 0–1)", _F * 255)]:
    for _fill in ("alpha", "black"):
        case("3", "format", f"float TIFF (mode F) with {_label}, --fill {_fill}", f"mask --fill {_fill}")(
            lambda ctx, v=_values, f=_fill, label=_label: _value_case(ctx, "float.tif", _float_tif(v), f, label))


def _int_tif(values):
    return lambda path: Image.fromarray(values.astype(np.int32), "I").save(path, format="TIFF")


_I = np.random.default_rng(0).integers(1, 60000, (20, 20))
for _label, _values in [("values up to 10^6 (beyond 16 bits)", _I * 16), ("negative values", _I - 30000)]:
    case("3", "format", f"32-bit integer TIFF (mode I) with {_label}, --fill alpha", "mask")(
        lambda ctx, v=_values, label=_label: _value_case(ctx, "int.tif", _int_tif(v), "alpha", label))


def _value_case(ctx, name, write, fill, label):
    """ok: listed with a reason, or (black fill) written exactly; BAD: an alpha release of clipped values."""
    os.makedirs(ctx.path("in"), exist_ok=True)
    write(ctx.path("in", name))
    extra = ["--fill", "black"] if fill == "black" else []
    code, log, _ = mask_cli(ctx, ctx.path("in"), ctx.path("out"), *extra)
    got = [o for o in outputs(ctx.path("out")) if not o.startswith(".")]
    if traceback_in(log):
        return f"exit {code}, traceback: {last_line(log)}", False
    if not got:
        reason = [line.strip() for line in log.splitlines() if line.startswith("  ")]
        return (f"exit {code}; {'listed: ' + reason[0][:140] if reason else 'NOT listed'}",
                code == 1 and listed(log, name))
    out = np.array(Image.open(os.path.join(ctx.path("out"), got[0])))
    src = np.array(Image.open(ctx.path("in", name)))
    if fill == "black" and not np.isfinite(src).all():
        return f"exit {code}; released an image with non-finite values (the masker saw NaN/inf) (SILENT WRONG)", False
    if fill == "black":
        return f"exit {code}; written, values {'exact' if out.shape == src.shape else 'changed'}", out.shape == src.shape
    colour = out[..., 0][out[..., -1] > 0]
    return (f"exit {code}; released {got[0]}: {len(np.unique(colour))} distinct revealed values "
            f"(clipped to the 8-bit range: SILENT WRONG)", False)


# prepare (rule 3 for prepare's inputs; first tour rule 3: every raw input is listed).

def _folder(root, classes=("cat", "dog"), n=3, seed=0):
    tour._folder(root, list(classes), seed=seed, n=n)


def _prepare(ctx, *extra, timeout=120):
    return ctx.cli("prepare", "--dataset", "image_folder", "--manual_dir", ctx.path("A"), "--data_dir",
                   ctx.path("tfds"), "--image_size", "8", *extra, timeout=timeout)


def _prepare_listed(ctx, name, timeout=120):
    code, log, _ = _prepare(ctx, timeout=timeout)
    if code == "timeout":
        return "still running after the time limit (hangs)", False
    if traceback_in(log):
        return f"exit {code}, traceback: {last_line(log)}", False
    line = [x for x in log.splitlines() if name in x]
    return f"exit {code}; {name} listed: {bool(line)}: {(line or [last_line(log)])[0].strip()[:150]}", \
        bool(line) and code in (0, 1)


@case("3", "prepare", "a folder named x.png inside a class folder", "prepare", found=True)
def _(ctx):
    _folder(ctx.path("A"))
    os.makedirs(ctx.path("A/train/cat/x.png"))
    return _prepare_listed(ctx, "x.png")


@case("3", "prepare", "identities.csv: identity 99999999999999999999 (beyond int64)", "prepare", found=True)
def _(ctx):
    _folder(ctx.path("A"))
    open(ctx.path("A/identities.csv"), "w").write("file,identity\ntrain/cat/0.png,99999999999999999999\n")
    return _prepare_listed(ctx, "identities.csv")


@case("3", "prepare", "identities.csv: identity 3000000000 (beyond the int32 feature)", "prepare")
def _(ctx):
    _folder(ctx.path("A"))
    open(ctx.path("A/identities.csv"), "w").write("file,identity\ntrain/cat/0.png,3000000000\n")
    return _prepare_listed(ctx, "identities.csv")


@case("3", "prepare", "identities.csv: identity '²' (a Unicode digit int() refuses)", "prepare")
def _(ctx):
    _folder(ctx.path("A"))
    open(ctx.path("A/identities.csv"), "w", encoding="utf-8").write("file,identity\ntrain/cat/0.png,²\n")
    return _prepare_listed(ctx, "identities.csv")


@case("3", "prepare", "identities.csv is a folder", "prepare")
def _(ctx):
    _folder(ctx.path("A"))
    os.makedirs(ctx.path("A/identities.csv"))
    return refused(_prepare(ctx))


@case("3", "prepare", "a FIFO named p.png inside a class folder", "prepare")
def _(ctx):
    _folder(ctx.path("A"))
    os.mkfifo(ctx.path("A/train/cat/p.png"))
    return _prepare_listed(ctx, "p.png", timeout=60)


@case("3", "prepare", "a dangling symlink named gone.png inside a class folder", "prepare")
def _(ctx):
    _folder(ctx.path("A"))
    os.symlink(ctx.path("nowhere.png"), ctx.path("A/train/cat/gone.png"))
    return _prepare_listed(ctx, "gone.png")


@case("3", "prepare", "a 3-frame APNG inside a class folder", "prepare")
def _(ctx):
    _folder(ctx.path("A"))
    _frames_writer("PNG")(ctx.path("A/train/cat/anim.png"))
    return _prepare_listed(ctx, "anim.png")


# ---- Rule 4: config changes on resume -------------------------------------------------------------

def _resume_case(ctx, saved_overrides, flag, expect_refusal=True):
    ctx.run(lambda: make_checkpoint(ctx.path("W"), saved_overrides))
    before = open(ctx.path("W/config.json"), "rb").read()
    result, seconds = timed(lambda: train_cli(ctx, ctx.path("W"), *saved_overrides, flag, timeout=240))
    code, log, _ = result
    same = open(ctx.path("W/config.json"), "rb").read() == before
    if expect_refusal:
        field = flag.removeprefix("--config.").split("=")[0].split(".")[-1]
        what, ok = refused(result, seconds, need=(field,))
        damaged = "damaged" in log
        return (what + f"; config.json {'unchanged' if same else 'REWRITTEN'}" + ("; called the checkpoint DAMAGED"
                                                                                   if damaged else ""),
                ok and same and not damaged)
    if traceback_in(log):
        return f"exit {code}, traceback: {last_line(log)}", False
    return f"exit {code}: resumed and finished{_s(seconds)}: {last_line(log)}", code == 0


for _flag, _saved, _found in [("--config.mask_channel=false", (), True), ("--config.game=paper", (), True),
                              ("--config.obfuscator_steps=0", (), True),
                              ("--config.adversary.complement_widths=((8,8,8,16),)", (), True),
                              ("--config.topk_fraction=0.5", (), True),
                              ("--config.mask_values=soft", (), False), ("--config.reveal=cap", (), False),
                              ("--config.adversary.pattern_weight=0.0", (), False),
                              ("--config.adversary.hidden=32", (), False),
                              ("--config.phi_hidden=32", (), False),
                              ("--config.task=expression", ("--config.num_classes=3",), False),
                              ("--config.seed=7", (), False)]:
    case("4", "resume", f"resume with {_flag.removeprefix('--config.')}", f"train --workdir W {_flag}",
         found=_found)(lambda ctx, f=_flag, s=_saved: _resume_case(ctx, s, f))


@case("4", "resume", "resume with num_rounds=6 (the checkpoint's run asked for 4): continues", "train --config.num_rounds=6")
def _(ctx):
    return _resume_case(ctx, (), "--config.num_rounds=6", expect_refusal=False)


@case("4", "resume", "resume with phi_learning_rate=0.002: continues", "train --config.phi_learning_rate=0.002")
def _(ctx):
    return _resume_case(ctx, (), "--config.phi_learning_rate=0.002", expect_refusal=False)


# Written before the fix as a refusal; decided since: the compute dtype changes neither the state's
# shapes (jax.eval_shape: parameters stay float32) nor what it means, like a learning rate.
@case("4", "resume", "resume with dtype=bfloat16 (compute dtype: same state shapes): continues", "train --config.dtype=bfloat16")
def _(ctx):
    return _resume_case(ctx, (), "--config.dtype=bfloat16", expect_refusal=False)


# ---- Rule 5: every check that does not need the data runs before the first compile ---------------

def _early(ctx, argv, limit=10.0, timeout=60, need=()):
    result, seconds = timed(lambda: ctx.cli(*argv, timeout=timeout))
    return refused(result, seconds, limit, need)


@case("5", "early", "train: num_validation=5 (fewer than one evaluation batch of 16)", "train --config.data.num_validation=5",
      found=True)
def _(ctx):
    return _early(ctx, ["train", "--config", SMOKE, "--workdir", ctx.path("W"), *FAST, "--config.data.num_validation=5"],
                  need=("num_validation",))


@case("5", "early", "train: num_train=8 (fewer than one training batch of 16)", "train --config.data.num_train=8")
def _(ctx):
    return _early(ctx, ["train", "--config", SMOKE, "--workdir", ctx.path("W"), *FAST, "--config.data.num_train=8"],
                  need=("num_train",))


@case("5", "early", "train: topk_fraction=0.0001 (round(K·32·32) = 0 pixels)", "train --config.topk_fraction=0.0001")
def _(ctx):
    return _early(ctx, ["train", "--config", SMOKE, "--workdir", ctx.path("W"), *FAST, "--config.topk_fraction=0.0001"],
                  need=("topk_fraction",))


@case("5", "early", "train: adversary.reinit_every=0 (the error must say None is the way to say never)",
      "train --config.adversary.reinit_every=0")
def _(ctx):
    return _early(ctx, ["train", "--config", SMOKE, "--workdir", ctx.path("W"), *FAST,
                        "--config.adversary.reinit_every=0"], need=("reinit_every", "None"))


@case("5", "early", "train: adversary.reinit_every=None (never) is accepted", "train --config.adversary.reinit_every=None")
def _(ctx):
    code, log, _ = train_cli(ctx, ctx.path("W"), "--config.adversary.reinit_every=None", "--config.num_rounds=2",
                             "--config.eval_every=2")
    if traceback_in(log):
        return f"exit {code}, traceback: {last_line(log)}", False
    return f"exit {code}: {last_line(log)}", code == 0


@case("5", "early", "train: game=nope", "train --config.game=nope")
def _(ctx):
    return _early(ctx, ["train", "--config", SMOKE, "--workdir", ctx.path("W"), *FAST, "--config.game=nope"],
                  need=("game",))


@case("5", "early", "train: reveal=cap with mask_values=soft", "train --config.reveal=cap --config.mask_values=soft")
def _(ctx):
    return _early(ctx, ["train", "--config", SMOKE, "--workdir", ctx.path("W"), *FAST, "--config.reveal=cap",
                        "--config.mask_values=soft"], need=("reveal",))


@case("5", "early", "train: mask_values=binary with mask_gradient=exact", "train --config.mask_gradient=exact")
def _(ctx):
    return _early(ctx, ["train", "--config", SMOKE, "--workdir", ctx.path("W"), *FAST,
                        "--config.mask_gradient=exact"], need=("mask_gradient",))


@case("5", "early", "train: image_size=4 with a 4-level masker (the U-Net pools below one pixel)", "train --config.image_size=4")
def _(ctx):
    return _early(ctx, ["train", "--config", SMOKE, "--workdir", ctx.path("W"), *FAST, "--config.image_size=4",
                        "--config.masker_widths=(8,16,16,16)"], need=("image_size",))


def _evaluate_early(ctx, *extra, need=()):
    return _early(ctx, ["evaluate", "--config", SMOKE, "--models", f"A={ctx.shared['bundle32']}", "--out",
                        ctx.path("R"), "--eval.network.epochs=1", *extra], need=need)


@case("5", "early", "evaluate --k_sweep=0,2", "evaluate --k_sweep=0,2", found=True)
def _(ctx):
    return _evaluate_early(ctx, "--k_sweep=0,2", need=("k_sweep",))


@case("5", "early", "evaluate --eval.probe_releases=Nope (no such release)", "evaluate --eval.probe_releases=Nope")
def _(ctx):
    return _evaluate_early(ctx, "--eval.probe_releases=('Nope',)", need=("probe_releases",))


@case("5", "early", "evaluate --eval.network.epochs=0", "evaluate --eval.network.epochs=0")
def _(ctx):
    return _evaluate_early(ctx, "--eval.network.epochs=0", need=("epochs",))


@case("5", "early", "evaluate --eval.batch_size=0", "evaluate --eval.batch_size=0")
def _(ctx):
    return _evaluate_early(ctx, "--eval.batch_size=0", need=("batch_size",))


@case("5", "early", "evaluate --eval.network.learning_rate=nan", "evaluate --eval.network.learning_rate=nan")
def _(ctx):
    return _evaluate_early(ctx, "--eval.network.learning_rate=nan", need=("learning_rate",))


@case("5", "early", "run --k_sweep=0 (checked before two trainings)", "run --k_sweep=0")
def _(ctx):
    return _early(ctx, ["run", "--config", SMOKE, "--workdir", ctx.path("R"), *FAST, "--k_sweep=0"],
                  need=("k_sweep",))


@case("5", "early", "run --eval.probe_releases=Nope (checked before two trainings)", "run --eval.probe_releases=Nope")
def _(ctx):
    return _early(ctx, ["run", "--config", SMOKE, "--workdir", ctx.path("R"), *FAST,
                        "--eval.probe_releases=('Nope',)"], need=("probe_releases",))


@case("5", "early", "run: num_validation=5 (checked before training)", "run --config.data.num_validation=5")
def _(ctx):
    return _early(ctx, ["run", "--config", SMOKE, "--workdir", ctx.path("R"), *FAST, "--config.data.num_validation=5"],
                  need=("num_validation",))


# ---- Rule 6: crash leftovers; Ctrl-C and SIGTERM end in one line ---------------------------------

def _signal_mask(ctx, signum, n_images=60):
    for i in range(n_images):
        save_image(ctx.path(f"in/{i:02d}.png"), rgb(200, 200, i))
    child = ctx.start(cli_child(["mask", "--model", ctx.shared["bundle"], "--input", ctx.path("in"), "--output",
                                 ctx.path("out"), "--batch_size", "4", "--noprogress"]))
    deadline = time.time() + 120
    while time.time() < deadline and len(outputs(ctx.path("out"))) < 8:
        time.sleep(0.01)
    os.kill(child.pid, signum)
    code, log, _ = child.wait()
    return code, log


def _hidden(folder):
    return [o for o in outputs(folder) if os.path.basename(o).startswith(".")]


@case("6", "signal", "SIGTERM during mask (3 tries), then rerun", "mask; SIGTERM; mask", found=True)
def _(ctx):
    leftovers, codes, lines, tracebacks = [], [], [], 0
    for attempt in range(3):
        sub = Context(ctx.path(f"t{attempt}"), ctx.shared)
        os.makedirs(sub.root)
        code, log = _signal_mask(sub, signal.SIGTERM)
        codes.append(code)
        tracebacks += traceback_in(log)
        lines.append(len([x for x in log.strip().splitlines() if x.strip() and not x.startswith(("I1", "W1"))]))
        rerun, _, _ = mask_cli(sub, sub.path("in"), sub.path("out"))
        leftovers += _hidden(sub.path("out"))
        codes.append(rerun)
    ok = not leftovers and not tracebacks and all(c == 143 for c in codes[::2]) and all(c == 0 for c in codes[1::2])
    return f"exits (signal, rerun) {codes}; lines printed {lines}; hidden leftovers after the reruns {leftovers}", ok


@case("6", "signal", "Ctrl-C (SIGINT) during mask", "mask; SIGINT")
def _(ctx):
    code, log = _signal_mask(ctx, signal.SIGINT)
    left = _hidden(ctx.path("out"))
    return (f"exit {code}; traceback: {traceback_in(log)}; hidden leftovers {left}: {last_line(log)}",
            code == 130 and not traceback_in(log) and not left)


@case("6", "signal", "kill -9 during mask, then rerun: the dead run's temporary file", "mask; SIGKILL; mask")
def _(ctx):
    _signal_mask(ctx, signal.SIGKILL)
    # A temporary file as a killed writer leaves it (the kill rarely lands inside a write).
    open(ctx.path("out/.05.png.abcd1234.tmp"), "wb").write(b"partial")
    code, log, _ = mask_cli(ctx, ctx.path("in"), ctx.path("out"))
    left = _hidden(ctx.path("out"))
    mentioned = ".05.png.abcd1234.tmp" in log
    return (f"rerun exit {code}; hidden leftovers after the rerun {left}; listed/cleaned in the output: {mentioned}",
            code == 0 and (not left or mentioned))


@case("6", "signal", "SIGTERM during export", "export; SIGTERM")
def _(ctx):
    ctx.run(lambda: make_checkpoint(ctx.path("W")))
    results = []
    for delay in (0.5, 1.5, 3.0):
        child = ctx.start(cli_child(["export", "--workdir", ctx.path("W"), "--out", ctx.path(f"B{delay}")]))
        time.sleep(delay)
        os.kill(child.pid, signal.SIGTERM)
        code, log, _ = child.wait()
        left = [n for n in os.listdir(ctx.path()) if n.startswith(f".B{delay}")]
        results.append((code, traceback_in(log), left))
    ok = all(not tb and not left and code in (0, 143) for code, tb, left in results)
    return f"(exit, traceback, left beside --out) per try: {results}", ok


@case("6", "signal", "a killed export's temporary folder beside --out, then export again", "export (leftover .B.tmp-*)")
def _(ctx):
    ctx.run(lambda: make_checkpoint(ctx.path("W")))
    os.makedirs(ctx.path(".B.tmp-dead1234"))
    open(ctx.path(".B.tmp-dead1234/masker.npz"), "wb").write(b"partial")
    code, log, _ = ctx.cli("export", "--workdir", ctx.path("W"), "--out", ctx.path("B"))
    left = [n for n in os.listdir(ctx.path()) if n.startswith(".B")]
    return f"exit {code}; left beside --out: {left}", code == 0 and (not left or ".B.tmp-dead1234" in log)


def _signal_command(ctx, argv, signum, ready, expect):
    child = ctx.start(cli_child(argv))
    deadline = time.time() + 120
    while time.time() < deadline and not ready():
        time.sleep(0.05)
    time.sleep(0.5)
    os.kill(child.pid, signum)
    code, log, _ = child.wait(120)
    if code == "timeout":
        return "did not stop", False
    tb = traceback_in(log)
    return f"exit {code}; traceback: {tb}: {last_line(log)}", code == expect and not tb


@case("6", "signal", "Ctrl-C (SIGINT) during evaluate", "evaluate; SIGINT")
def _(ctx):
    return _signal_command(ctx, ["evaluate", "--config", SMOKE, "--models", f"A={ctx.shared['bundle32']}", "--out",
                                 ctx.path("R"), "--eval.network.epochs=1"], signal.SIGINT,
                           lambda: os.path.isdir(ctx.path("R")) and "[evaluate" in open(ctx.path(".log1")).read(), 130)


@case("6", "signal", "SIGTERM during evaluate", "evaluate; SIGTERM")
def _(ctx):
    return _signal_command(ctx, ["evaluate", "--config", SMOKE, "--models", f"A={ctx.shared['bundle32']}", "--out",
                                 ctx.path("R"), "--eval.network.epochs=1"], signal.SIGTERM,
                           lambda: os.path.isdir(ctx.path("R")) and "[evaluate" in open(ctx.path(".log1")).read(), 143)


@case("6", "signal", "Ctrl-C (SIGINT) during prepare", "prepare; SIGINT")
def _(ctx):
    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):       # enough work (2 × 2000 images) to be stopped in the middle
        for i in range(2000):
            save_image(ctx.path("A", "train", label, f"{i}.png"), rng.integers(0, 256, (48, 48, 3), dtype=np.uint8))
    return _signal_command(ctx, ["prepare", "--dataset", "image_folder", "--manual_dir", ctx.path("A"), "--data_dir",
                                 ctx.path("tfds"), "--image_size", "8"], signal.SIGINT,
                           lambda: os.path.isdir(ctx.path("tfds")), 130)


@case("6", "signal", "Ctrl-C twice during train (the second aborts)", "train; SIGINT; SIGINT")
def _(ctx):
    child = ctx.start(cli_child(["train", "--config", SMOKE, "--workdir", ctx.path("W"), *FAST,
                                 "--config.num_rounds=400"]))
    deadline = time.time() + 240
    while time.time() < deadline and "first round" not in child.output():
        time.sleep(0.1)
    os.kill(child.pid, signal.SIGINT)
    time.sleep(0.2)
    os.kill(child.pid, signal.SIGINT)
    code, log, _ = child.wait(120)
    tb = traceback_in(log)
    return f"exit {code}; traceback: {tb}: {last_line(log)}", code == 130 and not tb


# ---- Driver -----------------------------------------------------------------------------

def run_tour(out_json: str, selected: list[str]) -> None:
    scratch = tempfile.mkdtemp(prefix="jaxmask-tour2-")
    shared = {"bundle": os.path.join(scratch, "bundle"), "bundle32": os.path.join(scratch, "bundle32")}
    setup = Context(scratch, shared)
    for name, size in (("bundle", 16), ("bundle32", 32)):
        code, log, _ = setup.run(lambda: tour.make_bundle(shared[name], size))
        assert code == 0, log
    results = []
    for number, (rule, area, kind, command, fn) in enumerate(CASES, 1):
        if selected and not any(s in kind for s in selected):
            continue
        root = os.path.join(scratch, f"case{number:03d}")
        os.makedirs(root)
        start = time.time()
        try:
            what, ok = fn(Context(root, shared))
        except Exception as error:    # the tour itself must go on
            what, ok = f"tour error: {type(error).__name__}: {error}", False
        seconds = time.time() - start
        results.append({"n": number, "rule": rule, "category": area, "kind": kind, "command": command,
                        "found": kind in FOUND, "what": what.replace("\n", " ").replace("|", "/"), "ok": bool(ok),
                        "seconds": round(seconds, 1)})
        print(f"{number:3d} {'ok ' if ok else 'BAD'} {seconds:5.1f}s [{rule}] {kind}: {what}", flush=True)
        with open(out_json, "w") as f:
            json.dump(results, f, indent=1)
    shutil.rmtree(scratch, ignore_errors=True)


def _short(text: str, limit: int = 170) -> str:
    import re
    text = re.sub(r"/tmp/jaxmask-tour2?-[^/ ]+/case\d+/?", "", text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def table(before_json: str, after_json: str) -> str:
    before = {r["kind"]: r for r in json.load(open(before_json))}
    after = json.load(open(after_json))
    lines = ["| # | rule | area | kind | command | before (babce54) | after (issue18) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in after:
        b = before.get(r["kind"])
        b_text = "not run" if b is None else f"**{'ok' if b['ok'] else 'BAD'}** — {_short(b['what'])}"
        kind = ("(issue) " if r.get("found") else "") + r["kind"]
        lines.append(f"| {r['n']} | {r['rule']} | {r['category']} | {kind} | `{r['command']}` | {b_text} | "
                     f"**{'ok' if r['ok'] else 'BAD'}** — {_short(r['what'])} |")
    return "\n".join(lines)


def summary(before_json: str, after_json: str) -> str:
    before = {r["kind"]: r for r in json.load(open(before_json))}
    after = json.load(open(after_json))
    rows = ["| rule | kinds (of them from the issue) | before: ok / BAD | after: ok / BAD |", "| --- | --- | --- | --- |"]
    for rule in sorted({r["rule"] for r in after}) + ["all"]:
        rs = [r for r in after if rule == "all" or r["rule"] == rule]
        nb = sum(1 for r in rs if before.get(r["kind"], {}).get("ok"))
        na = sum(1 for r in rs if r["ok"])
        found = sum(1 for r in rs if r.get("found"))
        rows.append(f"| {rule} | {len(rs)} ({found}) | {nb} / {len(rs) - nb} | {na} / {len(rs) - na} |")
    return "\n".join(rows)


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if sys.argv[1] == "--table":
        print(summary(sys.argv[2], sys.argv[3]))
        print()
        print(table(sys.argv[2], sys.argv[3]))
    elif sys.argv[1] == "--list":
        for number, (rule, area, kind, command, _) in enumerate(CASES, 1):
            print(f"{number:3d} [{rule}] {area:10s} {'(issue) ' if kind in FOUND else ''}{kind}")
    else:
        run_tour(sys.argv[1], sys.argv[2:])
