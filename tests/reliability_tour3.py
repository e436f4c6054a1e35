"""The third tour of bad and hostile inputs (docs/reliability.md, "The third tour"): a script.

    PYTHONPATH=/path/to/checkout JAXMASK_TOUR_REPO=/path/to/checkout \
        python tests/reliability_tour3.py OUT.json [kind-substring ...]
    python tests/reliability_tour3.py --list                         # the kinds, numbered
    python tests/reliability_tour3.py --table BEFORE.json AFTER.json  # the markdown tables

The kinds were written down before any fix, derived from the ten classes of
issue 25, each walked over every command and the Python API:

 1. an empty (or blank) path is not the current folder: every path flag of
    every command, every path argument of the API;
 2. a config file is checked like the command line: every way ``get_config``
    can fail (returns no ConfigDict, raises, missing, the file fails to
    import, is no file), on every command that reads ``--config``, and the
    API's one-call loader;
 3. every config field has a declared type and range, checked before the
    first compile: one hostile value per field of configs/synth_hair.py:smoke
    by its type (NaN for floats, -1 for integers, an unknown name for the
    enumerations, () for the widths), and a typo in a config file. Class 3 is
    issue 24's (the lead's ``config_checks.py``): its kinds are marked
    ``(lead)`` and are expected to fail until that branch is merged;
 4. the Python API keeps the command line's promises: inputs checked like
    the CLI's (NaN/inf, range, dtype, shape, empty batch), booleans that are
    bools, arguments by type;
 5. every size the user or a file gives is bounded before memory is asked
    for: flags, a (re-signed) manifest's fields, array headers, file sizes;
 6. SIGTERM and Ctrl-C in every phase of every command (imports, data,
    compile, steps, evaluation, checkpoint, export, each file write): one
    line, exit 128 + the signal, no lock and no temporary file left, no crash;
 7. only what jaxmask wrote is ever deleted: files named like jaxmask's
    temporary files and locks, but the user's, beside every writer's output;
 8. every file read is a regular file, or the error says why not: FIFOs and
    folders where a file is read (config, manifest, arrays, metrics, raw
    dataset files), never a hang;
 9. the release's promises hold in every output format: ``--fill black``
    over every format Pillow both reads and writes (``Image.OPEN`` ∩
    ``Image.SAVE``), hidden pixels exactly 0 and revealed ones exact;
10. names in a report are unique: a model named like a baseline or Oracle
    row, twice, or with characters that break the table.

Each case runs in a scratch folder (tests/reliability_tour.py's forked
children for the CLI and the API; real ``python -m jaxmask.cli`` processes for
the signals). A verdict is **ok**, or **BAD** with its fault: traceback,
silent wrong (accepted), data loss, bypass, hang, crash (a signal's default
action or a segfault), leftover (a lock or a temporary file), late (an error
after the first compile, > 10 s), unnamed (the line names neither the thing
nor the flag), missing (an API the class asks for does not exist).
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reliability_tour as tour  # noqa: E402
import reliability_tour2 as tour2  # noqa: E402
from reliability_tour import (  # noqa: E402
    FAST, REPO, SMOKE, Context, cli_child, last_line, outputs, rgb, save_image, traceback_in)

CASES: list[tuple[str, str, str, str, object, str]] = []   # (class, area, kind, command, function, owner)
FOUND = set()            # kinds the issue itself reported
FAULTS = ("traceback", "silent wrong", "data loss", "bypass", "hang", "crash", "leftover", "late", "unnamed",
          "missing", "tour")
# The code under test: the checkout on PYTHONPATH (its commands run as `python -m jaxmask.cli` too).
CODE = next((p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p), REPO)
CONFIG_FILE = SMOKE.split(":")[0]


def case(cls: str, area: str, kind: str, command: str, found: bool = False, owner: str = "issue25"):
    def register(fn):
        CASES.append((cls, area, kind, command, fn, owner))
        if found:
            FOUND.add(kind)
        return fn
    return register


class Verdict(tuple):
    """(what happened, ok, fault): ``fault`` is one of FAULTS when not ok."""

    def __new__(cls, what: str, ok: bool, fault: str | None = None):
        return super().__new__(cls, (what, bool(ok), None if ok else (fault or "silent wrong")))


def refusal(result, need=(), limit=10.0, seconds=None, exit_codes=None) -> Verdict:
    """A one-line refusal: non-zero exit, no traceback, naming each of ``need``, within ``limit`` s."""
    code, log, _ = result
    if code == "timeout":
        return Verdict(f"still running after the time limit: accepted, or not refused up front{_s(seconds)}",
                       False, "hang" if not log.strip() else "silent wrong")
    if traceback_in(log) or "Fatal Python error" in log:
        return Verdict(f"exit {code}, traceback: {last_line(log)}{_s(seconds)}", False, "traceback")
    line = last_line(log)
    if code == 0:
        return Verdict(f"exit 0 (accepted): {line}{_s(seconds)}", False, "silent wrong")
    if isinstance(code, int) and code < 0:
        return Verdict(f"killed by {_signame(-code)}: {line}{_s(seconds)}", False, "crash")
    missing = [n for n in need if n.lower() not in log.lower()]
    if missing:
        return Verdict(f"exit {code}: {line} (does not name {missing}){_s(seconds)}", False, "unnamed")
    if seconds is not None and seconds > limit:
        return Verdict(f"exit {code}: {line} (late: {seconds:.0f} s > {limit:.0f} s)", False, "late")
    return Verdict(f"exit {code}: {line}{_s(seconds)}", True)


def _s(seconds):
    return "" if seconds is None else f" [{seconds:.1f} s]"


def _signame(number):
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def timed_cli(ctx, *argv, timeout=120, cwd=None):
    """(exit, log, rss), seconds of `jaxmask ARGV` in a forked child (``cwd``: its working folder)."""
    body = cli_child(argv)
    if cwd is not None:
        def body(inner=body):
            os.chdir(cwd)
            inner()
    start = time.time()
    result = ctx.run(body, timeout)
    return result, time.time() - start


def cli_refusal(ctx, *argv, need=(), limit=10.0, timeout=60, cwd=None) -> Verdict:
    result, seconds = timed_cli(ctx, *argv, timeout=timeout, cwd=cwd)
    return refusal(result, need, limit, seconds)


# ---- The API, in a forked child -------------------------------------------------------------

def api(ctx, body, timeout=120):
    """Runs ``body()`` in a forked child. ('returned', repr) | ('raised', type, message, is a traceback
    from inside a library) | ('timeout',) | ('crashed', code)."""
    result_path = ctx.path(f".api{len(os.listdir(ctx.path()))}.json")

    def child():
        try:
            value = body()
            out = {"status": "returned", "value": repr(value)[:300]}
        except BaseException as error:     # noqa: BLE001 (what the API raised is the verdict)
            out = {"status": "raised", "type": type(error).__name__,
                   "bases": [c.__name__ for c in type(error).__mro__],
                   "message": str(error).replace("\n", " ")[:400]}
        with open(result_path, "w") as f:
            json.dump(out, f)
    code, log, _ = ctx.run(child, timeout)
    if code == "timeout":
        return {"status": "timeout", "log": log}
    if not os.path.exists(result_path):
        return {"status": "crashed", "code": code, "log": log}
    return json.load(open(result_path))


def api_refusal(outcome, types=("ValueError", "TypeError"), need=()) -> Verdict:
    """A clear refusal: one of ``types`` (or a subclass), the message naming each of ``need``."""
    status = outcome["status"]
    if status == "timeout":
        return Verdict("still running after the time limit", False, "hang")
    if status == "crashed":
        return Verdict(f"crashed: exit {outcome['code']}", False, "crash")
    if status == "returned":
        return Verdict(f"returned {outcome['value'][:120]} (accepted)", False, "silent wrong")
    text = f"{outcome['type']}: {outcome['message'][:160]}"
    if outcome["type"] in ("AttributeError", "ImportError", "ModuleNotFoundError") and "jaxmask" in outcome["message"]:
        return Verdict(f"no such API: {text}", False, "missing")
    if not any(t in outcome["bases"] for t in types):
        return Verdict(f"raised {text} (an error from inside, not a check)", False, "traceback")
    missing = [n for n in need if n.lower() not in outcome["message"].lower()]
    if missing:
        return Verdict(f"raised {text} (does not name {missing})", False, "unnamed")
    return Verdict(f"raised {text}", True)


def bundle_api(ctx, name="bundle"):
    from jaxmask import export
    return export.load_masker(ctx.shared[name])


# ---- Fixtures -----------------------------------------------------------------------------

def images(folder, n=3, size=16, seed=0):
    for i in range(n):
        save_image(os.path.join(folder, f"{i}.png"), rgb(size, size, seed + i))


def write_config(path, body):
    with open(path, "w") as f:
        f.write("import ml_collections\n\n" + body)
    return path


def make_checkpoint(ctx, name="W"):
    code, log, _ = ctx.run(lambda: tour2.make_checkpoint(ctx.path(name)))
    assert code == 0, log[-2000:]
    return ctx.path(name)


def hidden(folder):
    """Names starting with '.' under ``folder`` (recursively): locks, temporary files."""
    return [o for o in outputs(folder) if any(part.startswith(".") for part in o.split(os.sep))]


def beside(path):
    """Hidden entries in the folder of ``path`` that start with '.<its name>' (an export's lock and temps)."""
    parent, name = os.path.split(path)
    return sorted(e for e in os.listdir(parent) if e.startswith(f".{name}")) if os.path.isdir(parent) else []


def mkfifo(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.mkfifo(path)
    return path


# ---- Class 1: an empty path is not the current folder --------------------------------------

def _empty_path(ctx, argv, flag, blank=""):
    """Runs the command from a scratch current folder holding an image and a file; judges the refusal and
    that nothing in the current folder was read as input, written or deleted."""
    cwd = ctx.path("cwd")
    images(cwd, 2)
    open(os.path.join(cwd, "notes.txt"), "w").write("the user's")
    before = outputs(cwd)
    verdict = cli_refusal(ctx, *[blank if a == "<EMPTY>" else a for a in argv], need=(flag,), cwd=cwd, timeout=90)
    after = outputs(cwd)
    if after != before:
        return Verdict(f"{verdict[0]}; the current folder changed: {sorted(set(after) ^ set(before))[:6]}", False,
                       "data loss" if set(before) - set(after) else "silent wrong")
    return verdict


def _mask_argv(ctx, which):
    argv = {"--model": ctx.shared["bundle"], "--input": ctx.path("in"), "--output": ctx.path("out")}
    argv[which] = "<EMPTY>"
    images(ctx.path("in"))
    return ["mask", *[x for k, v in argv.items() for x in (k, v)], "--noprogress"]


for _flag in ("--input", "--output", "--model"):
    for _blank, _label in (("", '""'), ("   ", '"   " (blank)')):
        case("1", "mask", f"mask {_flag} {_label}", f"mask {_flag} {_label}",
             found=_flag in ("--input", "--output") and _blank == "")(
            lambda ctx, f=_flag, b=_blank: _empty_path(ctx, _mask_argv(ctx, f), f, b))

@case("1", "mask", 'mask --compilation_cache ""', 'mask --compilation_cache ""')
def _(ctx):
    images(ctx.path("in"))
    return _empty_path(ctx, ["mask", "--model", ctx.shared["bundle"], "--input", ctx.path("in"), "--output",
                             ctx.path("out"), "--noprogress", "--compilation_cache", "<EMPTY>"], "--compilation_cache")


def _export_empty(ctx, which):
    argv = {"--workdir": make_checkpoint(ctx), "--out": ctx.path("B")}
    argv[which] = "<EMPTY>"
    return _empty_path(ctx, ["export", *[x for k, v in argv.items() for x in (k, v)]], which)


for _flag in ("--workdir", "--out"):
    case("1", "export", f'export {_flag} ""', f'export {_flag} ""')(lambda ctx, f=_flag: _export_empty(ctx, f))

case("1", "train", 'train --workdir ""', 'train --workdir ""')(
    lambda ctx: _empty_path(ctx, ["train", "--config", SMOKE, "--workdir", "<EMPTY>", *FAST], "--workdir"))
case("1", "train", 'train --config ""', 'train --config ""')(
    lambda ctx: _empty_path(ctx, ["train", "--config", "<EMPTY>", "--workdir", ctx.path("W"), *FAST], "--config"))
case("1", "run", 'run --workdir ""', 'run --workdir ""')(
    lambda ctx: _empty_path(ctx, ["run", "--config", SMOKE, "--workdir", "<EMPTY>", *FAST], "--workdir"))
case("1", "run", 'run --config "  " (blank)', 'run --config "  "')(
    lambda ctx: _empty_path(ctx, ["run", "--config", "<EMPTY>", "--workdir", ctx.path("W")], "--config", "  "))
case("1", "evaluate", 'evaluate --out ""', 'evaluate --out ""')(
    lambda ctx: _empty_path(ctx, ["evaluate", "--config", SMOKE, "--models", f"A={ctx.shared['bundle32']}",
                                  "--out", "<EMPTY>"], "--out"))
case("1", "evaluate", 'evaluate --models "A=  " (a blank bundle path)', 'evaluate --models "A=  "')(
    lambda ctx: _empty_path(ctx, ["evaluate", "--config", SMOKE, "--models", "A=  ", "--out", ctx.path("R")],
                            "--models"))
case("1", "evaluate", 'evaluate --config ""', 'evaluate --config ""')(
    lambda ctx: _empty_path(ctx, ["evaluate", "--config", "<EMPTY>", "--models", f"A={ctx.shared['bundle32']}",
                                  "--out", ctx.path("R")], "--config"))
case("1", "prepare", 'prepare --data_dir "" (given, not left out)', 'prepare --data_dir ""')(
    lambda ctx: _empty_path(ctx, ["prepare", "--dataset", "synth_faces", "--num_train", "32", "--num_validation",
                                  "16", "--num_test", "16", "--image_size", "32", "--data_dir", "<EMPTY>"],
                            "--data_dir"))
case("1", "prepare", 'prepare --manual_dir "" (given, not left out)', 'prepare --manual_dir ""')(
    lambda ctx: _empty_path(ctx, ["prepare", "--dataset", "image_folder", "--manual_dir", "<EMPTY>",
                                  "--data_dir", ctx.path("tfds")], "--manual_dir"))
case("1", "prepare", 'prepare --config ""', 'prepare --config ""')(
    lambda ctx: _empty_path(ctx, ["prepare", "--config", "<EMPTY>", "--data_dir", ctx.path("tfds")], "--config"))
case("1", "bench", 'bench --json ""', 'bench --json ""')(
    lambda ctx: _empty_path(ctx, ["bench", "--config", SMOKE, "--benchmarks", "topk", "--json", "<EMPTY>"],
                            "--json"))
case("1", "bench", 'bench --config ""', 'bench --config ""')(
    lambda ctx: _empty_path(ctx, ["bench", "--config", "<EMPTY>", "--benchmarks", "topk"], "--config"))


def _api_empty(ctx, body, need):
    cwd = ctx.path("cwd")
    images(cwd, 2)
    before = outputs(cwd)

    def inside():
        os.chdir(cwd)
        return body()
    verdict = api_refusal(api(ctx, inside), need=need)
    after = outputs(cwd)
    if after != before:
        return Verdict(f"{verdict[0]}; the current folder changed: {sorted(set(after) ^ set(before))[:6]}", False,
                       "silent wrong")
    return verdict


case("1", "API", 'load_masker("")', 'jaxmask.load_masker("")')(
    lambda ctx: _api_empty(ctx, lambda: __import__("jaxmask").load_masker(""), ("path",)))
case("1", "API", 'masking.mask_folder(bundle, "", out)', "mask_folder(input_dir='')")(
    lambda ctx: _api_empty(ctx, lambda: __import__("jaxmask.masking").masking.mask_folder(
        bundle_api(ctx), "", ctx.path("out"), progress=False), ("input_dir",)))
case("1", "API", 'masking.mask_folder(bundle, in, "")', "mask_folder(output_dir='')")(
    lambda ctx: (images(ctx.path("in")), _api_empty(ctx, lambda: __import__("jaxmask.masking").masking.mask_folder(
        bundle_api(ctx), ctx.path("in"), "", progress=False), ("output_dir",)))[1])
case("1", "API", 'config_files.load("")', 'config_files.load("")')(
    lambda ctx: _api_empty(ctx, lambda: __import__("jaxmask.config_files").config_files.load(""), ("path",)))


def _export_api_empty(ctx):
    def body():
        import jax
        from jaxmask import build, export
        config = tour2.smoke_config()
        state = jax.tree.map(np.asarray, build.from_config(config).template())
        return export.export_masker(state, config, "", step=1)
    return _api_empty(ctx, body, ("out_dir",))


case("1", "API", 'export.export_masker(state, config, "")', "export_masker(out_dir='')")(_export_api_empty)


def _train_api_empty(ctx):
    def body():
        from jaxmask import train
        return train.train_and_evaluate(tour2.smoke_config(), "")
    return _api_empty(ctx, body, ("workdir",))


case("1", "API", 'train.train_and_evaluate(config, "")', "train_and_evaluate(workdir='')")(_train_api_empty)


# ---- Class 2: config files ------------------------------------------------------------------

BAD_CONFIGS = {
    "get_config returns a dict": "def get_config(arg=None):\n    return {'dtype': 'float32', 'image_size': 32}\n",
    "get_config raises (ZeroDivisionError)": "def get_config(arg=None):\n    return 1 / 0\n",
    "get_config returns None": "def get_config(arg=None):\n    config = ml_collections.ConfigDict()\n",
    "no get_config": "def config():\n    return ml_collections.ConfigDict()\n",
    "a syntax error": "def get_config(arg=None)\n    return ml_collections.ConfigDict()\n",
    "imports a missing module": "import jaxmask_no_such_module\n\ndef get_config(arg=None):\n    return None\n",
    "get_config takes no argument (given :smoke)": "def get_config():\n    return ml_collections.ConfigDict()\n",
    "get_config raises AttributeError": "def get_config(arg=None):\n    return ml_collections.ConfigDict().nope\n",
}
# Which command reads each (every command that takes --config, each failure at least once).
_CONFIG_COMMANDS = {
    "get_config returns a dict": ("train", "evaluate", "run", "bench"),
    "get_config raises (ZeroDivisionError)": ("train", "prepare"),
    "get_config returns None": ("evaluate",),
    "no get_config": ("run",),
    "a syntax error": ("train",),
    "imports a missing module": ("prepare",),
    "get_config takes no argument (given :smoke)": ("train",),
    "get_config raises AttributeError": ("bench",),
}


def _config_argv(ctx, command, spec):
    return {
        "train": ["train", "--config", spec, "--workdir", ctx.path("W")],
        "evaluate": ["evaluate", "--config", spec, "--models", f"A={ctx.shared['bundle32']}", "--out", ctx.path("R")],
        "run": ["run", "--config", spec, "--workdir", ctx.path("W")],
        "prepare": ["prepare", "--config", spec, "--data_dir", ctx.path("tfds")],
        "bench": ["bench", "--config", spec, "--benchmarks", "topk"],
    }[command]


def _config_case(ctx, command, body, arg=""):
    path = write_config(ctx.path("bad_config.py"), body)
    spec = path + (":" + arg if arg else "")
    result, seconds = timed_cli(ctx, *_config_argv(ctx, command, spec), timeout=90)
    verdict = refusal(result, need=("bad_config.py",), seconds=seconds)
    if verdict[1] and len([ln for ln in result[1].strip().splitlines() if ln.strip() and not re.match(
            r"[IWEF]\d{4} ", ln)]) > 2:
        return Verdict(f"{verdict[0]} (more than one line)", False, "traceback")
    return verdict


for _what, _body in BAD_CONFIGS.items():
    for _command in _CONFIG_COMMANDS[_what]:
        case("2", "config", f"config file: {_what} ({_command})", f"{_command} --config bad_config.py",
             found=(_what, _command) in {("get_config returns a dict", "train"),
                                         ("get_config raises (ZeroDivisionError)", "train")})(
            lambda ctx, c=_command, b=_body, w=_what: _config_case(ctx, c, b, "smoke" if ":smoke" in w else ""))


def _api_load(spec_of, expect):
    def run(ctx):
        body_of = {"dict": BAD_CONFIGS["get_config returns a dict"],
                   "raises": BAD_CONFIGS["get_config raises (ZeroDivisionError)"],
                   "syntax": BAD_CONFIGS["a syntax error"]}
        spec = spec_of(ctx, body_of)
        if expect == "config":
            def body():
                config = __import__("jaxmask.config_files").config_files.load(spec)
                return f"{type(config).__name__} topk_fraction={config.topk_fraction}"
            outcome = api(ctx, body)
            if outcome["status"] == "returned" and "ConfigDict" in outcome["value"]:
                return Verdict(f"returned {outcome['value']}", True)
            return Verdict(f"{outcome.get('type')}: {outcome.get('message', outcome.get('value', ''))[:150]}",
                           False, "missing")
        outcome = api(ctx, lambda: __import__("jaxmask.config_files").config_files.load(spec))
        return api_refusal(outcome, types=("ValueError", "TypeError", "OSError"), need=("bad_config.py",))
    return run


case("2", "API", 'config_files.load("configs/synth_hair.py:smoke") (one call, path:arg)',
     "config_files.load(path:arg)")(_api_load(lambda ctx, b: SMOKE, "config"))
case("2", "API", "config_files.load of a file whose get_config returns a dict", "config_files.load")(
    _api_load(lambda ctx, b: write_config(ctx.path("bad_config.py"), b["dict"]), "error"))
case("2", "API", "config_files.load of a file whose get_config raises", "config_files.load")(
    _api_load(lambda ctx, b: write_config(ctx.path("bad_config.py"), b["raises"]), "error"))
case("2", "API", "config_files.load of a file with a syntax error", "config_files.load")(
    _api_load(lambda ctx, b: write_config(ctx.path("bad_config.py"), b["syntax"]), "error"))


@case("2", "API", "jaxmask.load_config (the package's name for the loader)", "jaxmask.load_config(path:arg)")
def _(ctx):
    outcome = api(ctx, lambda: __import__("jaxmask").load_config(SMOKE).topk_fraction)
    if outcome["status"] == "returned":
        return Verdict(f"returned a config (topk_fraction={outcome['value']})", True)
    return Verdict(f"{outcome.get('type')}: {outcome.get('message', '')[:150]}", False, "missing")


# ---- Class 3 (the lead's, issue 24): declared fields, checked before compiling ----------------

def _smoke_fields():
    """(dotted name, hostile value text) for every field of the smoke config, by its type."""
    sys.path.insert(0, CODE)
    import importlib.util
    spec = importlib.util.spec_from_file_location("jaxmask_tour3_smoke", CONFIG_FILE)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        config = module.get_config("smoke")
    except Exception:      # the tour lists the other classes even without ml_collections
        return []
    enums = {"dataset", "task", "mask_values", "mask_gradient", "game", "reveal", "dtype", "optimizer",
             "parallel", "minimal.judge_objective"}
    fields = []

    def walk(node, prefix=""):
        for key in sorted(node.keys()):
            value, name = node[key], f"{prefix}{key}"
            if hasattr(value, "keys"):
                walk(value, name + ".")
            elif isinstance(value, bool):
                continue
            elif name in enums:
                fields.append((name, "nope"))
            elif isinstance(value, str):
                continue                     # paths (data_dir, manual_dir): class 1
            elif isinstance(value, int):
                fields.append((name, "-1"))
            elif isinstance(value, float) or value is None:
                fields.append((name, "nan"))
            elif isinstance(value, tuple):
                fields.append((name, "()"))
    walk(config)
    return fields


def _field_case(ctx, name, value):
    result, seconds = timed_cli(ctx, "train", "--config", SMOKE, "--workdir", ctx.path("W"), *FAST,
                                f"--config.{name}={value}", timeout=25)
    verdict = refusal(result, need=(name.split(".")[-1],), seconds=seconds)
    return verdict


for _name, _value in _smoke_fields():
    case("3", "field", f"--config.{_name}={_value}", f"train --config.{_name}={_value}", owner="lead",
         found=(_name, _value) in {("cap_threshold", "nan")})(
        lambda ctx, n=_name, v=_value: _field_case(ctx, n, v))

case("3", "field", "--config.cap_threshold=1.5 (nothing is ever revealed)", "train --config.cap_threshold=1.5",
     found=True, owner="lead")(lambda ctx: _field_case(ctx, "cap_threshold", "1.5"))
case("3", "field", "--config.channels=2 (neither grey nor RGB)", "train --config.channels=2", found=True,
     owner="lead")(lambda ctx: _field_case(ctx, "channels", "2"))


@case("3", "config", "a config file that sets config.topk_fracton = 0.1 (a typo)", "train --config typo.py",
      found=True, owner="lead")
def _(ctx):
    write_config(ctx.path("typo.py"), f"import sys\nsys.path.insert(0, {os.path.dirname(CONFIG_FILE)!r})\n"
                 "from jaxmask import config_files\n\ndef get_config(arg=None):\n"
                 f"    config = config_files.load({CONFIG_FILE!r}, 'smoke')\n"
                 "    config.topk_fracton = 0.1\n    return config\n")
    result, seconds = timed_cli(ctx, "train", "--config", ctx.path("typo.py"), "--workdir", ctx.path("W"), *FAST,
                                timeout=25)
    return refusal(result, need=("topk_fracton",), seconds=seconds)


# ---- Class 4: the Python API keeps the CLI's promises ----------------------------------------

def _mask_api(ctx, make, need, types=("ValueError", "TypeError"), method="mask", **kwargs):
    def body():
        bundle = bundle_api(ctx)
        x = make(bundle)
        out = getattr(bundle, method)(x, **kwargs)
        out = out[0] if isinstance(out, tuple) else out
        return f"{method} returned shape {tuple(out.shape)}, finite={bool(np.isfinite(np.asarray(out)).all())}"
    return api_refusal(api(ctx, body), types=types, need=need)


def _batch(bundle, n=2, fill=0.5):
    return np.full((n, *bundle.image_shape), fill, np.float32)


def _with(value):
    def make(bundle):
        x = _batch(bundle)
        x[0, 3, 4, 0] = value
        return x
    return make


case("4", "API", "load_masker(B).mask(x) with one NaN pixel", "bundle.mask(x)", found=True)(
    lambda ctx: _mask_api(ctx, _with(np.nan), ("images", "NaN")))
case("4", "API", "load_masker(B).mask(x) with one +inf pixel", "bundle.mask(x)")(
    lambda ctx: _mask_api(ctx, _with(np.inf), ("images",)))
case("4", "API", "load_masker(B).mask(x) with values 0–255 (not 0–1)", "bundle.mask(x)")(
    lambda ctx: _mask_api(ctx, lambda b: _batch(b, fill=200.0), ("images",)))
case("4", "API", "load_masker(B).mask(x) with a negative value", "bundle.mask(x)")(
    lambda ctx: _mask_api(ctx, _with(-0.5), ("images",)))
case("4", "API", "load_masker(B).mask(x) with an empty batch (0 images)", "bundle.mask(x)", found=True)(
    lambda ctx: _mask_api(ctx, lambda b: _batch(b, n=0), ("images",)))
case("4", "API", "load_masker(B).mask(x) with uint8 images (0–255)", "bundle.mask(x)")(
    lambda ctx: _mask_api(ctx, lambda b: np.full((2, *b.image_shape), 200, np.uint8), ("images", "uint8")))
case("4", "API", "load_masker(B).mask(x) with one image, no batch axis", "bundle.mask(x)")(
    lambda ctx: _mask_api(ctx, lambda b: _batch(b)[0], ("images",)))
case("4", "API", "load_masker(B).mask('a string')", "bundle.mask('x')")(
    lambda ctx: _mask_api(ctx, lambda b: "photo.png", ("images",)))
case("4", "API", "load_masker(B).mask(x, topk_fraction=1.5)", "bundle.mask(x, topk_fraction=1.5)")(
    lambda ctx: _mask_api(ctx, _batch, ("topk_fraction",), topk_fraction=1.5))
case("4", "API", "load_masker(B).mask(x, topk_fraction=nan)", "bundle.mask(x, topk_fraction=nan)")(
    lambda ctx: _mask_api(ctx, _batch, ("topk_fraction",), topk_fraction=float("nan")))
case("4", "API", "load_masker(B).mask(x, topk_fraction='0.5') (a string)", "bundle.mask(x, topk_fraction='0.5')")(
    lambda ctx: _mask_api(ctx, _batch, ("topk_fraction",), topk_fraction="0.5"))
case("4", "API", "load_masker(B).scores(x) with one NaN pixel", "bundle.scores(x)")(
    lambda ctx: _mask_api(ctx, _with(np.nan), ("images",), method="scores"))


def _unverified_bundle(ctx):
    """A format-1 bundle (no manifest checksum) edited to K = 1.0: what the flag must keep out."""
    bundle = tour2.copy_bundle(ctx, "bundle32")
    manifest = tour2.read_manifest(bundle)
    manifest["format_version"] = 1
    manifest.pop("manifest_sha256")
    manifest["k"], manifest["topk_fraction"] = 1024, 1.0
    tour2.write_manifest(bundle, manifest)
    return bundle


@case("4", "API", "load_masker(B, accept_unverified_manifest='false') on an edited format-1 bundle",
      "load_masker(B, accept_unverified_manifest='false')", found=True)
def _(ctx):
    bundle = _unverified_bundle(ctx)
    outcome = api(ctx, lambda: __import__("jaxmask.export").export.load_masker(
        bundle, accept_unverified_manifest="false").k)
    verdict = api_refusal(outcome, types=("TypeError",), need=("accept_unverified_manifest",))
    if outcome["status"] == "returned":
        return Verdict(f"loaded it: k={outcome['value']} (the string 'false' read as true)", False, "bypass")
    return verdict


case("4", "API", "load_masker(B, accept_unverified_manifest=1) (an int, not a bool)",
     "load_masker(B, accept_unverified_manifest=1)")(
    lambda ctx: api_refusal(api(ctx, lambda: __import__("jaxmask.export").export.load_masker(
        _unverified_bundle(ctx), accept_unverified_manifest=1).k), types=("TypeError",),
        need=("accept_unverified_manifest",)))
case("4", "API", "load_masker(42) (not a path)", "load_masker(42)")(
    lambda ctx: api_refusal(api(ctx, lambda: __import__("jaxmask").load_masker(42)), types=("TypeError",),
                            need=("path",)))
case("4", "API", "load_masker(None)", "load_masker(None)")(
    lambda ctx: api_refusal(api(ctx, lambda: __import__("jaxmask").load_masker(None)), types=("TypeError",),
                            need=("path",)))


def _mask_folder_api(ctx, need, types=("ValueError", "TypeError"), **kwargs):
    images(ctx.path("in"))

    def body():
        from jaxmask import masking
        report = masking.mask_folder(bundle_api(ctx), ctx.path("in"), ctx.path("out"), **{"progress": False, **kwargs})
        return f"masked {len(report.written)}"
    return api_refusal(api(ctx, body), types=types, need=need)


for _name, _value in (("overwrite", "false"), ("save_masks", "no"), ("follow_symlinks", "false"),
                      ("follow_outside", "False"), ("progress", "off")):
    case("4", "API", f"mask_folder(…, {_name}={_value!r}) (a string, not a bool)",
         f"mask_folder({_name}={_value!r})")(
        lambda ctx, n=_name, v=_value: _mask_folder_api(ctx, (n,), ("TypeError",), **{n: v}))
case("4", "API", "mask_folder(…, batch_size='4') (a string)", "mask_folder(batch_size='4')")(
    lambda ctx: _mask_folder_api(ctx, ("batch_size",), ("TypeError",), batch_size="4"))
case("4", "API", "mask_folder(…, batch_size=2.5) (a float)", "mask_folder(batch_size=2.5)")(
    lambda ctx: _mask_folder_api(ctx, ("batch_size",), batch_size=2.5))
case("4", "API", "mask_folder(…, topk_fraction=0) ", "mask_folder(topk_fraction=0)")(
    lambda ctx: _mask_folder_api(ctx, ("topk_fraction",), topk_fraction=0.0))
case("4", "API", "mask_folder(…, max_pixels=0)", "mask_folder(max_pixels=0)")(
    lambda ctx: _mask_folder_api(ctx, ("max_pixels",), max_pixels=0))
case("4", "API", "mask_folder('a path', …) (a path where the loaded bundle goes)", "mask_folder('B', …)")(
    lambda ctx: (images(ctx.path("in")), api_refusal(api(ctx, lambda: __import__("jaxmask.masking").masking.mask_folder(
        ctx.shared["bundle"], ctx.path("in"), ctx.path("out"), progress=False)), types=("TypeError",),
        need=("bundle",)))[1])


def _export_api(ctx, need, **kwargs):
    def body():
        import jax
        from jaxmask import build, export
        config = tour2.smoke_config()
        state = jax.tree.map(np.asarray, build.from_config(config).template())
        state = jax.tree.map(lambda x: np.full_like(x, 0.1) if x.dtype.kind == "f" else x, state)
        return export.export_masker(state, config, ctx.path("B"), step=1, **kwargs)
    return api_refusal(api(ctx, body), types=("TypeError",), need=need)


case("4", "API", "export_masker(…, with_classifier='no') (a string, not a bool)",
     "export_masker(with_classifier='no')")(lambda ctx: _export_api(ctx, ("with_classifier",), with_classifier="no"))
case("4", "API", "export_masker(…, overwrite='false') (a string, not a bool)", "export_masker(overwrite='false')")(
    lambda ctx: _export_api(ctx, ("overwrite",), overwrite="false"))


@case("4", "API", "train_and_evaluate(config, W, accept_unverified_checkpoint='false')",
      "train_and_evaluate(accept_unverified_checkpoint='false')")
def _(ctx):
    def body():
        from jaxmask import train
        return train.train_and_evaluate(tour2.smoke_config(), ctx.path("W"), accept_unverified_checkpoint="false")
    return api_refusal(api(ctx, body, timeout=60), types=("TypeError",), need=("accept_unverified_checkpoint",))


# ---- Class 5: sizes bounded before memory is asked for ---------------------------------------

def _memory_limited(ctx, *argv, need=(), gb=8, timeout=120):
    """The command with its address space capped at ``gb`` GB (a refusal must come before any allocation)."""
    def body(inner=cli_child(argv)):
        resource.setrlimit(resource.RLIMIT_AS, (gb << 30, gb << 30))
        inner()
    start = time.time()
    result = ctx.run(body, timeout)
    return refusal(result, need, seconds=time.time() - start)


@case("5", "mask", "mask --batch_size 100000000000", "mask --batch_size 100000000000", found=True)
def _(ctx):
    images(ctx.path("in"))
    return _memory_limited(ctx, "mask", "--model", ctx.shared["bundle"], "--input", ctx.path("in"), "--output",
                           ctx.path("out"), "--batch_size", "100000000000", "--noprogress", need=("--batch_size",))


@case("5", "mask", "mask --batch_size 4611686018427387904 (2**62)", "mask --batch_size 2**62")
def _(ctx):
    images(ctx.path("in"))
    return _memory_limited(ctx, "mask", "--model", ctx.shared["bundle"], "--input", ctx.path("in"), "--output",
                           ctx.path("out"), "--batch_size", str(2 ** 62), "--noprogress", need=("--batch_size",))


@case("5", "mask", "mask --max_pixels 1000000000000000 (12 PB per image at ~12 bytes/pixel)",
      "mask --max_pixels 10**15")
def _(ctx):
    images(ctx.path("in"))
    return _memory_limited(ctx, "mask", "--model", ctx.shared["bundle"], "--input", ctx.path("in"), "--output",
                           ctx.path("out"), "--max_pixels", str(10 ** 15), "--noprogress", need=("--max_pixels",))


@case("5", "API", "mask_folder(…, batch_size=10**11)", "mask_folder(batch_size=10**11)")
def _(ctx):
    images(ctx.path("in"))

    def body():
        resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))
        from jaxmask import masking
        return masking.mask_folder(bundle_api(ctx), ctx.path("in"), ctx.path("out"), batch_size=10 ** 11,
                                   progress=False).written
    return api_refusal(api(ctx, body), types=("ValueError",), need=("batch_size",))


def _signed_manifest_case(ctx, edit, need):
    bundle = tour2.copy_bundle(ctx)
    manifest = tour2.read_manifest(bundle)
    edit(manifest)
    tour2.write_manifest(bundle, tour2.resign(manifest))
    images(ctx.path("in"))
    return _memory_limited(ctx, "mask", "--model", bundle, "--input", ctx.path("in"), "--output", ctx.path("out"),
                           "--noprogress", need=need)


def _size(value):
    def edit(manifest):
        from math import floor
        manifest["image_size"] = value
        manifest["k"] = int(floor(manifest["topk_fraction"] * value * value + 0.5))
    return edit


case("5", "bundle", "re-signed manifest: image_size 10**12 (k to match)", "mask --model B", found=True)(
    lambda ctx: _signed_manifest_case(ctx, _size(10 ** 12), ("image_size",)))
case("5", "bundle", "re-signed manifest: image_size 100000 (a 10**10-pixel model input)", "mask --model B")(
    lambda ctx: _signed_manifest_case(ctx, _size(100000), ("image_size",)))
case("5", "bundle", "re-signed manifest: channels 10**9", "mask --model B")(
    lambda ctx: _signed_manifest_case(ctx, lambda m: m.update(channels=10 ** 9), ("channels",)))
case("5", "bundle", "re-signed manifest: model.masker.widths [10**9]", "mask --model B")(
    lambda ctx: _signed_manifest_case(ctx, lambda m: m["model"]["masker"].update(widths=[10 ** 9]), ("widths",)))


@case("5", "bundle", "masker.npz whose array header claims 10**12 elements (checksums recomputed)",
      "mask --model B")
def _(ctx):
    import hashlib
    bundle = tour2.copy_bundle(ctx)
    path = os.path.join(bundle, "masker.npz")
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    name = sorted(members)[0]
    data = members[name]
    header_len = int.from_bytes(data[8:10], "little")
    header = data[10:10 + header_len].decode("latin1")
    huge = re.sub(r"'shape': \([^)]*\)", "'shape': (1000000, 1000000)", header)
    huge = huge.rstrip("\n").ljust(header_len - 1) + "\n"
    members[name] = data[:10] + huge.encode("latin1") + data[10 + header_len:]
    with zipfile.ZipFile(path, "w") as z:
        for n, content in members.items():
            z.writestr(n, content)
    manifest = tour2.read_manifest(bundle)
    manifest["files"]["masker.npz"] = {"sha256": hashlib.sha256(open(path, "rb").read()).hexdigest(),
                                       "bytes": os.path.getsize(path)}
    tour2.write_manifest(bundle, tour2.resign(manifest))
    images(ctx.path("in"))
    return _memory_limited(ctx, "mask", "--model", bundle, "--input", ctx.path("in"), "--output", ctx.path("out"),
                           "--noprogress", need=("masker.npz",))


@case("5", "bundle", "manifest.json of 64 MB (whitespace padding, re-signed)", "mask --model B")
def _(ctx):
    bundle = tour2.copy_bundle(ctx)
    manifest = tour2.resign(tour2.read_manifest(bundle))
    with open(os.path.join(bundle, "manifest.json"), "w") as f:
        f.write(json.dumps(manifest) + " " * (64 << 20))
    images(ctx.path("in"))
    return _memory_limited(ctx, "mask", "--model", bundle, "--input", ctx.path("in"), "--output", ctx.path("out"),
                           "--noprogress", need=("manifest.json",))


case("5", "bench", "bench --batch_size 100000000000", "bench --batch_size 100000000000")(
    lambda ctx: _memory_limited(ctx, "bench", "--config", SMOKE, "--benchmarks", "topk", "--batch_size",
                                "100000000000", need=("--batch_size",)))
case("5", "bench", "bench --image_size 1000000", "bench --image_size 1000000")(
    lambda ctx: _memory_limited(ctx, "bench", "--config", SMOKE, "--benchmarks", "topk", "--image_size", "1000000",
                                need=("--image_size",)))
case("5", "prepare", "prepare --dataset synth_faces --num_train 1000000000000",
     "prepare --num_train 10**12")(
    lambda ctx: _memory_limited(ctx, "prepare", "--dataset", "synth_faces", "--num_train", str(10 ** 12),
                                "--image_size", "32", "--data_dir", ctx.path("tfds"), need=("--num_train",)))
case("5", "train", "train --config.batch_size=100000000000", "train --config.batch_size=10**11", owner="lead")(
    lambda ctx: _memory_limited(ctx, "train", "--config", SMOKE, "--workdir", ctx.path("W"), *FAST,
                                "--config.batch_size=100000000000", need=("batch_size",)))
case("5", "evaluate", "evaluate --eval.batch_size=100000000000", "evaluate --eval.batch_size=10**11", owner="lead")(
    lambda ctx: _memory_limited(ctx, "evaluate", "--config", SMOKE, "--models", f"A={ctx.shared['bundle32']}",
                                "--out", ctx.path("R"), "--eval.batch_size=100000000000", need=("batch_size",)))


# ---- Class 6: signals in every phase ---------------------------------------------------------

def _env():
    env = dict(os.environ, PYTHONPATH=CODE, JAX_PLATFORMS="cpu")
    env.setdefault("JAXMASK_COMPILATION_CACHE", os.path.join(tempfile.gettempdir(), "jaxmask-tour3-xla"))
    return env


def signalled(ctx, argv, signum, ready, delay=0.0, timeout=240, env=None, second=None):
    """Runs `python -m jaxmask.cli ARGV`, sends ``signum`` once ``ready(log)`` holds (``ready`` a number:
    that many seconds after the process started) + ``delay`` s; a second signal ``second`` 0.2 s later if
    given. (exit | 'timeout' | 'finished', log, log after the signal)."""
    if isinstance(ready, (int, float)):
        ready, delay = (lambda _log: True), delay + ready
    log_path = ctx.path(f".sig{len(os.listdir(ctx.path()))}.log")
    with open(log_path, "w") as log:
        child = subprocess.Popen([sys.executable, "-m", "jaxmask.cli", *argv], stdout=log, stderr=subprocess.STDOUT,
                                 env=env or _env(), cwd=ctx.path(),
                                 # As from a terminal: a tour started in the background hands SIGINT ignored.
                                 preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + timeout
    while time.time() < deadline and child.poll() is None and not ready(open(log_path, errors="replace").read()):
        time.sleep(0.01)
    if child.poll() is not None:
        text = open(log_path, errors="replace").read()
        return "finished", text, ""
    time.sleep(delay)
    at = len(open(log_path, errors="replace").read())
    if child.poll() is not None:
        text = open(log_path, errors="replace").read()
        return "finished", text, ""
    child.send_signal(signum)
    if second is not None:
        time.sleep(0.2)
        if child.poll() is None:
            child.send_signal(second)
    try:
        code = child.wait(timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
        code = "timeout"
    text = open(log_path, errors="replace").read()
    return code, text, text[at:]


def _noise(line: str) -> bool:
    return bool(re.match(r"[IWEF]\d{4} ", line)) or not line.strip()


def stop_verdict(command, signum, result, leftovers) -> Verdict:
    code, log, after = result
    expected = 128 + signum
    if code == "finished":
        return Verdict(f"finished before the signal could land (the phase was not reached): {last_line(log)}",
                       False, "tour")
    if code == "timeout":
        return Verdict("did not stop within the time limit", False, "hang")
    lines = [ln for ln in after.splitlines() if not _noise(ln)]
    if "Fatal Python error" in log or code == -signal.SIGSEGV:
        return Verdict(f"exit {code}: crashed ({'segmentation fault' if 'Segmentation' in log else 'fatal error'})"
                       f"; left {leftovers}", False, "crash")
    if isinstance(code, int) and code < 0:
        return Verdict(f"exit {code} (killed by {_signame(-code)}: the default action, no line); left {leftovers}",
                       False, "crash")
    if traceback_in(log):
        return Verdict(f"exit {code}, traceback: {last_line(log)}; left {leftovers}", False, "traceback")
    if leftovers:
        return Verdict(f"exit {code}; left {leftovers}: {last_line(after or log)}", False, "leftover")
    said = [ln for ln in lines if ln.startswith(f"jaxmask {command}")]
    if code != expected or len(said) != 1:
        return Verdict(f"exit {code} (want {expected}); {len(said)} line(s) saying so: {last_line(after or log)}",
                       False, "unnamed")
    return Verdict(f"exit {code}: {said[0][:150]}", True)


LOCKS = re.compile(r"(^|/)\.(jaxmask.*\.lock|.+\.jaxmask\.lock)$")
TEMPS = re.compile(r"(jaxmask-tmp|\.tmp-|\.jaxmask-write-test-|config\.json\.tmp$)")


def left_behind(*folders):
    """Locks and jaxmask's temporary files under ``folders`` (orbax's own tmp folders are discarded by the
    next run, documented, and not counted)."""
    found = []
    for folder in folders:
        if os.path.isfile(folder):
            continue
        for rel in outputs(folder) + [os.path.relpath(os.path.join(d, x), folder)
                                      for d, xs, _ in os.walk(folder) for x in xs]:
            if LOCKS.search(rel) or TEMPS.search(rel):
                found.append(rel)
    return sorted(set(found))


def _mask_signal_argv(ctx, n=120, size=200):
    for i in range(n):
        save_image(ctx.path(f"in/{i:03d}.png"), rgb(size, size, i))
    return ["mask", "--model", ctx.shared["bundle"], "--input", ctx.path("in"), "--output", ctx.path("out"),
            "--batch_size", "2", "--noprogress"]


def _retrying(run, ready, clean):
    """``run(ready)``; a time-based phase the command had already passed on this machine (it finished
    before the signal) is tried again earlier (0.7×, up to three times), after ``clean()``."""
    result = run(ready)
    for _ in range(3):
        if result[0] != "finished" or not isinstance(ready, float):
            break
        clean()
        ready *= 0.7
        result = run(ready)
    return result


def _mask_phase(ctx, signum, ready, delay=0.0):
    argv = _mask_signal_argv(ctx)
    result = _retrying(lambda r: signalled(ctx, argv, signum, r, delay), ready,
                       lambda: shutil.rmtree(ctx.path("out"), ignore_errors=True))
    return stop_verdict("mask", signum, result, left_behind(ctx.path("out")))


def _out_has(ctx, name_test):
    def ready(_log):
        folder = ctx.path("out")
        try:
            return any(name_test(n) for n in os.listdir(folder))
        except OSError:
            return False
    return ready


def _started(seconds):
    """``seconds`` after the command's process started (``signalled`` takes a number so)."""
    return float(seconds)


for _sig in (signal.SIGTERM, signal.SIGINT):
    _n = _sig.name
    case("6", "signal", f"mask, imports: {_n} 1 s after the start", f"mask; {_n}")(
        lambda ctx, s=_sig: _mask_phase(ctx, s, _started(1.0)))
    case("6", "signal", f"mask, bundle load: {_n} 2 s after the start", f"mask; {_n}")(
        lambda ctx, s=_sig: _mask_phase(ctx, s, _started(2.0)))
    case("6", "signal", f"mask, first batch (compile): {_n} as the output's lock appears", f"mask; {_n}")(
        lambda ctx, s=_sig: _mask_phase(ctx, s, _out_has(ctx, lambda n: n.endswith(".lock"))))


def _mask_writes(ctx, signum, tries=10):
    """``signum`` at a random moment of the writes, ``tries`` times: the temporary-file race."""
    rng = random.Random(signum)
    bad = []
    argv = _mask_signal_argv(ctx, n=200, size=160)
    for attempt in range(tries):
        sub = Context(ctx.path(f"t{attempt}"), ctx.shared)
        os.makedirs(sub.root)
        here = [sub.path("out") if a == ctx.path("out") else a for a in argv]
        result = signalled(sub, here, signum, _out_has(sub, lambda n: n.endswith(".png")), rng.uniform(0, 0.3))
        verdict = stop_verdict("mask", signum, result, left_behind(sub.path("out")))
        if not verdict[1]:
            bad.append(verdict)
    if bad:
        return Verdict(f"{len(bad)}/{tries} tries BAD; first: {bad[0][0]}", False, bad[0][2])
    return Verdict(f"{tries}/{tries} tries: exit {128 + signum}, one line, nothing left", True)


for _sig in (signal.SIGTERM, signal.SIGINT):
    case("6", "signal", f"mask, file writes: {_sig.name} at a random moment (10 tries)", f"mask; {_sig.name}",
         found=_sig == signal.SIGTERM)(lambda ctx, s=_sig: _mask_writes(ctx, s))


@case("6", "signal", "mask API (mask_folder) interrupted by Ctrl-C during the writes", "mask_folder; SIGINT")
def _(ctx):
    for i in range(60):
        save_image(ctx.path(f"in/{i:03d}.png"), rgb(150, 150, i))

    def body():
        from jaxmask import masking
        masking.mask_folder(bundle_api(ctx), ctx.path("in"), ctx.path("out"), batch_size=2, progress=False)
    child = ctx.start(body)
    deadline = time.time() + 120
    while time.time() < deadline and not [n for n in outputs(ctx.path("out")) if n.endswith(".png")]:
        time.sleep(0.01)
    time.sleep(0.05)
    os.kill(child.pid, signal.SIGINT)
    code, log, _ = child.wait(120)
    left = left_behind(ctx.path("out"))
    return Verdict(f"exit {code}; KeyboardInterrupt: {'KeyboardInterrupt' in log}; left {left}",
                   not left and code != "timeout", "leftover" if left else "hang")


def _export_phase(ctx, signum, ready, delay=0.0):
    workdir = make_checkpoint(ctx)
    result = _retrying(lambda r: signalled(ctx, ["export", "--workdir", workdir, "--out", ctx.path("B")], signum,
                                           r, delay), ready, lambda: shutil.rmtree(ctx.path("B"), ignore_errors=True))
    return stop_verdict("export", signum, result, left_behind(workdir) + beside(ctx.path("B")))


def _beside_appears(ctx, test):
    return lambda _log: any(test(e) for e in os.listdir(ctx.path()))


for _sig in (signal.SIGTERM, signal.SIGINT):
    _n = _sig.name
    case("6", "signal", f"export, imports: {_n} 1 s after the start", f"export; {_n}")(
        lambda ctx, s=_sig: _export_phase(ctx, s, _started(1.0)))
    case("6", "signal", f"export, checkpoint restore: {_n} 2 s after the start", f"export; {_n}")(
        lambda ctx, s=_sig: _export_phase(ctx, s, _started(2.0)))
    case("6", "signal", f"export, bundle write: {_n} as its lock appears", f"export; {_n}")(
        lambda ctx, s=_sig: _export_phase(ctx, s, _beside_appears(ctx, lambda e: e.endswith(".jaxmask.lock"))))


def _train_argv(ctx, *extra):
    return ["train", "--config", SMOKE, "--workdir", ctx.path("W"), *FAST, "--config.num_rounds=40", *extra]


def _train_phase(ctx, signum, ready, delay=0.0, extra=(), env=None, second=None):
    result = signalled(ctx, _train_argv(ctx, *extra), signum, ready, delay, env=env, second=second)
    return stop_verdict("train", signum, result, left_behind(ctx.path("W")))


def _log_has(text):
    return lambda log: text in log


def _tmp_checkpoint(ctx):
    def ready(_log):
        folder = ctx.path("W", "checkpoints")
        return os.path.isdir(folder) and any("tmp" in n for n in os.listdir(folder))
    return ready


for _sig in (signal.SIGTERM, signal.SIGINT):
    _n = _sig.name
    case("6", "signal", f"train, imports: {_n} 1 s after the start", f"train; {_n}")(
        lambda ctx, s=_sig: _train_phase(ctx, s, _started(1.0)))
    case("6", "signal", f"train, data and first compile: {_n} 1 s after the data is decoded", f"train; {_n}",
         found=True)(lambda ctx, s=_sig: _train_phase(ctx, s, _log_has("uint8 cache"), 1.0))
    case("6", "signal", f"train, first compile, compilation cache off: {_n} 3 s after the data", f"train; {_n}")(
        lambda ctx, s=_sig: _train_phase(ctx, s, _log_has("uint8 cache"), 3.0,
                                         env=dict(_env(), JAXMASK_COMPILATION_CACHE="off")))
    case("6", "signal", f"train, the round's compile: {_n} 2 s after 'training from scratch'", f"train; {_n}")(
        lambda ctx, s=_sig: _train_phase(ctx, s, _log_has("training from scratch"), 2.0))
    case("6", "signal", f"train, steps: {_n} after the first round", f"train; {_n}")(
        lambda ctx, s=_sig: _train_phase(ctx, s, _log_has("first round"), 0.3, extra=("--config.eval_every=40",)))
    case("6", "signal", f"train, evaluation (model selection probes): {_n} 1 s into it", f"train; {_n}")(
        lambda ctx, s=_sig: _train_phase(ctx, s, _log_has("first round"), 1.0, extra=("--config.eval_every=1",)))
    case("6", "signal", f"train, checkpoint save: {_n} as a temporary checkpoint folder appears", f"train; {_n}")(
        lambda ctx, s=_sig: _train_phase(ctx, s, _tmp_checkpoint(ctx), 0.0, extra=("--config.checkpoint_every=1",
                                                                                  "--config.eval_every=40")))
case("6", "signal", "train, first compile: Ctrl-C twice (the second aborts)", "train; SIGINT; SIGINT")(
    lambda ctx: _train_phase(ctx, signal.SIGINT, _log_has("uint8 cache"), 1.0, second=signal.SIGINT))


def _evaluate_argv(ctx):
    return ["evaluate", "--config", SMOKE, "--models", f"A={ctx.shared['bundle32']}", "--out", ctx.path("R"),
            "--eval.network.epochs=1"]


def _evaluate_phase(ctx, signum, ready, delay=0.0):
    result = signalled(ctx, _evaluate_argv(ctx), signum, ready, delay)
    return stop_verdict("evaluate", signum, result, left_behind(ctx.path("R")))


for _sig in (signal.SIGTERM, signal.SIGINT):
    _n = _sig.name
    case("6", "signal", f"evaluate, imports: {_n} 1 s after the start", f"evaluate; {_n}")(
        lambda ctx, s=_sig: _evaluate_phase(ctx, s, _started(1.0)))
    case("6", "signal", f"evaluate, data: {_n} as the data line appears", f"evaluate; {_n}")(
        lambda ctx, s=_sig: _evaluate_phase(ctx, s, _log_has("data:")))
    case("6", "signal", f"evaluate, the evaluator's training: {_n} 3 s after the data line", f"evaluate; {_n}")(
        lambda ctx, s=_sig: _evaluate_phase(ctx, s, _log_has("data:"), 3.0))
    case("6", "signal", f"evaluate, releases: {_n} as the first row is released", f"evaluate; {_n}")(
        lambda ctx, s=_sig: _evaluate_phase(ctx, s, _log_has("releasing")))


def _run_phase(ctx, signum, ready, delay=0.0):
    # 128 training images: the evaluation's networks train on batches of 64.
    argv = ["run", "--config", SMOKE, "--workdir", ctx.path("W"), *FAST, "--config.data.num_train=128",
            "--eval.network.epochs=1"]
    result = signalled(ctx, argv, signum, ready, delay, timeout=400)
    return stop_verdict("run", signum, result, left_behind(ctx.path("W")))


def _export_of_run(ctx):
    def ready(_log):
        folder = ctx.path("W", "ours")
        return os.path.isdir(folder) and any(e.endswith(".jaxmask.lock") or ".tmp-" in e for e in os.listdir(folder))
    return ready


for _sig in (signal.SIGTERM, signal.SIGINT):
    _n = _sig.name
    case("6", "signal", f"run, imports: {_n} 1 s after the start", f"run; {_n}")(
        lambda ctx, s=_sig: _run_phase(ctx, s, _started(1.0)))
    case("6", "signal", f"run, training Ours: {_n} 1 s after its data", f"run; {_n}")(
        lambda ctx, s=_sig: _run_phase(ctx, s, _log_has("uint8 cache"), 1.0))
    case("6", "signal", f"run, export of Ours: {_n} as its bundle's lock appears", f"run; {_n}")(
        lambda ctx, s=_sig: _run_phase(ctx, s, _export_of_run(ctx)))
    case("6", "signal", f"run, evaluation: {_n} 2 s after its data line", f"run; {_n}")(
        lambda ctx, s=_sig: _run_phase(ctx, s, _log_has("data:"), 2.0))


def _prepare_phase(ctx, signum, ready, delay=0.0):
    argv = ["prepare", "--dataset", "synth_faces", "--num_train", "20000", "--num_validation", "16", "--num_test",
            "16", "--image_size", "32", "--data_dir", ctx.path("tfds")]
    result = signalled(ctx, argv, signum, ready, delay)
    return stop_verdict("prepare", signum, result, left_behind(ctx.path("tfds")))


def _bench_phase(ctx, signum, ready, delay=0.0):
    argv = ["bench", "--config", SMOKE, "--repeats", "50", "--json", ctx.path("bench.json")]
    result = signalled(ctx, argv, signum, ready, delay)
    return stop_verdict("bench", signum, result, left_behind(ctx.path()))


for _sig in (signal.SIGTERM, signal.SIGINT):
    _n = _sig.name
    case("6", "signal", f"prepare, imports: {_n} 1 s after the start", f"prepare; {_n}")(
        lambda ctx, s=_sig: _prepare_phase(ctx, s, _started(1.0)))
    case("6", "signal", f"prepare, generating and writing: {_n} 1 s after --data_dir appears", f"prepare; {_n}")(
        lambda ctx, s=_sig: _prepare_phase(ctx, s, lambda _log: os.path.isdir(ctx.path("tfds")), 1.0))
    case("6", "signal", f"bench, imports: {_n} 1 s after the start", f"bench; {_n}")(
        lambda ctx, s=_sig: _bench_phase(ctx, s, _started(1.0)))
    case("6", "signal", f"bench, compile and timing: {_n} 6 s after the start", f"bench; {_n}")(
        lambda ctx, s=_sig: _bench_phase(ctx, s, _started(6.0)))


# ---- Class 7: only what jaxmask wrote is ever deleted -----------------------------------------

def _kept(ctx, files: dict, run) -> Verdict:
    """Writes the user's ``files`` (relative path → content), runs ``run()``; every one must be left as it was."""
    for rel, content in files.items():
        os.makedirs(os.path.dirname(ctx.path(rel)) or ".", exist_ok=True)
        open(ctx.path(rel), "w").write(content)
    code, log, _ = run()
    gone = [rel for rel, content in files.items()
            if not os.path.exists(ctx.path(rel)) or open(ctx.path(rel)).read() != content]
    if traceback_in(log):
        return Verdict(f"exit {code}, traceback: {last_line(log)}", False, "traceback")
    if gone:
        return Verdict(f"exit {code}; the user's {gone} deleted or changed: {last_line(log)}", False, "data loss")
    return Verdict(f"exit {code}; the user's files kept: {last_line(log)}", True)


def _mask_into(ctx, *extra):
    images(ctx.path("in"))
    return lambda: tour2.mask_cli(ctx, ctx.path("in"), ctx.path("out"), *extra)


case("7", "mask", "the user's .photo.backup01.tmp and .keep.jaxmask-tmp in the output folder", "mask", found=True)(
    lambda ctx: _kept(ctx, {"out/.photo.backup01.tmp": "backup", "out/.keep.jaxmask-tmp": "keep"},
                      _mask_into(ctx)))
case("7", "mask", "the user's .0.png.abcd1234.tmp beside an output 0.png (an old version's pattern)", "mask")(
    lambda ctx: _kept(ctx, {"out/.0.png.abcd1234.tmp": "mine"}, _mask_into(ctx)))
case("7", "mask", "the user's .1.png.q1w2e3r4.jaxmask-tmp (jaxmask's exact pattern) in a sub-folder", "mask")(
    lambda ctx: _kept(ctx, {"out/sub/.1.png.q1w2e3r4.jaxmask-tmp": "mine"}, _mask_into(ctx)))
case("7", "mask", "the user's file named .jaxmask.lock in the output folder", "mask")(
    lambda ctx: _kept(ctx, {"out/.jaxmask.lock": "my notes, not a lock"}, _mask_into(ctx)))


@case("7", "mask", "a killed mask's own temporary file is still removed by the next run", "mask; kill -9; mask")
def _(ctx):
    argv = _mask_signal_argv(ctx, n=40, size=150)
    # Stop it with SIGSTOP as it writes, so that a temporary file exists at the kill.
    log = ctx.path(".kill.log")
    child = subprocess.Popen([sys.executable, "-m", "jaxmask.cli", *argv], stdout=open(log, "w"),
                             stderr=subprocess.STDOUT, env=_env())
    found = []
    deadline = time.time() + 120
    while time.time() < deadline and child.poll() is None and not found:
        try:
            found = [n for n in os.listdir(ctx.path("out")) if n.endswith(".jaxmask-tmp") or n.endswith(".tmp")]
        except OSError:
            pass
        if not found:
            time.sleep(0.001)
    child.kill()
    child.wait()
    if not found:
        return Verdict("the kill did not land inside a write (no temporary file seen)", False, "tour")
    left = [n for n in os.listdir(ctx.path("out")) if n in found]
    code, log_text, _ = tour2.mask_cli(ctx, ctx.path("in"), ctx.path("out"))
    still = [n for n in os.listdir(ctx.path("out")) if n in found]
    return Verdict(f"killed with {left} in the output; rerun exit {code}; still there: {still}",
                   code == 0 and not still, "leftover")


@case("7", "export", "the user's folder .B.tmp-notes beside --out", "export --out B")
def _(ctx):
    workdir = make_checkpoint(ctx)
    return _kept(ctx, {".B.tmp-notes/notes.txt": "mine"},
                 lambda: ctx.cli("export", "--workdir", workdir, "--out", ctx.path("B")))


@case("7", "export", "the user's file named .B.jaxmask.lock beside --out", "export --out B")
def _(ctx):
    workdir = make_checkpoint(ctx)
    return _kept(ctx, {".B.jaxmask.lock": "mine"}, lambda: ctx.cli("export", "--workdir", workdir, "--out",
                                                                   ctx.path("B")))


@case("7", "export", "a killed export's own temporary folder is still removed by the next export",
      "export; kill -9; export")
def _(ctx):
    workdir = make_checkpoint(ctx)
    child = subprocess.Popen([sys.executable, "-m", "jaxmask.cli", "export", "--workdir", workdir, "--out",
                              ctx.path("B")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())
    found = []
    deadline = time.time() + 120
    while time.time() < deadline and child.poll() is None and not found:
        found = [e for e in os.listdir(ctx.path()) if e.startswith(".B.tmp-")]
        if not found:
            time.sleep(0.001)
    child.kill()
    child.wait()
    if not found:
        return Verdict("the kill did not land inside the write", False, "tour")
    shutil.rmtree(ctx.path("B"), ignore_errors=True)
    code, log, _ = ctx.cli("export", "--workdir", workdir, "--out", ctx.path("B"))
    still = [e for e in os.listdir(ctx.path()) if e in found]
    return Verdict(f"killed with {found}; the next export exit {code}; still there: {still}",
                   code == 0 and not still, "leftover")


@case("7", "train", "the user's file named .jaxmask-train.lock in the workdir", "train --workdir W")
def _(ctx):
    return _kept(ctx, {"W/.jaxmask-train.lock": "my notes"},
                 lambda: ctx.cli("train", "--config", SMOKE, "--workdir", ctx.path("W"), *FAST, "--config.num_rounds=1",
                                 "--config.eval_every=1", "--config.checkpoint_every=1", "--config.log_every=1"))


@case("7", "evaluate", "the user's file named .jaxmask.lock in --out", "evaluate --out R")
def _(ctx):
    return _kept(ctx, {"R/.jaxmask.lock": "my notes"},
                 lambda: ctx.cli("evaluate", "--config", SMOKE, "--models", f"A={ctx.shared['bundle32']}", "--out",
                                 ctx.path("R"), "--eval.network.epochs=1"))


# ---- Class 8: every file read is a regular file, or it says why not ---------------------------

def _fifo_refusal(ctx, argv, need=(), timeout=60):
    verdict = cli_refusal(ctx, *argv, need=need, timeout=timeout)
    if not verdict[1] and verdict[2] == "silent wrong" and "still running" in verdict[0]:
        return Verdict(verdict[0].replace("accepted, or not refused up front", "blocked reading the FIFO"), False,
                       "hang")
    return verdict


@case("8", "config", "--config is a FIFO", "train --config fifo.py")
def _(ctx):
    mkfifo(ctx.path("fifo.py"))
    return _fifo_refusal(ctx, ["train", "--config", ctx.path("fifo.py"), "--workdir", ctx.path("W")],
                         need=("fifo.py",))


@case("8", "config", "--config is a folder", "evaluate --config folder.py")
def _(ctx):
    os.makedirs(ctx.path("folder.py"))
    return _fifo_refusal(ctx, ["evaluate", "--config", ctx.path("folder.py"), "--models",
                               f"A={ctx.shared['bundle32']}", "--out", ctx.path("R")], need=("folder.py",))


@case("8", "config", "a config file's sibling base (load_sibling) is a FIFO", "bench --config variant.py")
def _(ctx):
    mkfifo(ctx.path("base.py"))
    write_config(ctx.path("variant.py"), "from jaxmask import config_files\n\ndef get_config(arg=None):\n"
                 "    return config_files.load_sibling(__file__, 'base.py', arg)\n")
    return _fifo_refusal(ctx, ["bench", "--config", ctx.path("variant.py"), "--benchmarks", "topk"],
                         need=("base.py",))


def _bundle_fifo(ctx, name):
    bundle = tour2.copy_bundle(ctx)
    os.unlink(os.path.join(bundle, name))
    mkfifo(os.path.join(bundle, name))
    images(ctx.path("in"))
    return _fifo_refusal(ctx, ["mask", "--model", bundle, "--input", ctx.path("in"), "--output", ctx.path("out"),
                               "--noprogress"], need=(name, "FIFO"))


case("8", "bundle", "the bundle's manifest.json is a FIFO", "mask --model B")(
    lambda ctx: _bundle_fifo(ctx, "manifest.json"))
case("8", "bundle", "the bundle's masker.npz is a FIFO", "mask --model B")(
    lambda ctx: _bundle_fifo(ctx, "masker.npz"))


@case("8", "bundle", "--model is a FIFO", "mask --model fifo")
def _(ctx):
    images(ctx.path("in"))
    return _fifo_refusal(ctx, ["mask", "--model", mkfifo(ctx.path("fifo")), "--input", ctx.path("in"), "--output",
                               ctx.path("out"), "--noprogress"], need=("fifo",))


@case("8", "API", "load_masker(B) where B/manifest.json is a FIFO", "load_masker(B)")
def _(ctx):
    bundle = tour2.copy_bundle(ctx)
    os.unlink(os.path.join(bundle, "manifest.json"))
    mkfifo(os.path.join(bundle, "manifest.json"))
    outcome = api(ctx, lambda: __import__("jaxmask").load_masker(bundle), timeout=60)
    return api_refusal(outcome, need=("manifest.json", "FIFO"))


def _workdir_fifo(ctx, rel, command):
    workdir = make_checkpoint(ctx)
    path = os.path.join(workdir, rel)
    if os.path.exists(path):
        os.unlink(path)
    mkfifo(path)
    argv = {"export": ["export", "--workdir", workdir, "--out", ctx.path("B")],
            "train": ["train", "--config", SMOKE, "--workdir", workdir, *FAST]}[command]
    return _fifo_refusal(ctx, argv, need=(os.path.basename(rel), "FIFO"), timeout=90)


case("8", "workdir", "the workdir's metrics.jsonl is a FIFO", "export --workdir W")(
    lambda ctx: _workdir_fifo(ctx, "metrics.jsonl", "export"))
case("8", "workdir", "the workdir's metrics.jsonl is a FIFO (resume)", "train --workdir W")(
    lambda ctx: _workdir_fifo(ctx, "metrics.jsonl", "train"))
case("8", "workdir", "the workdir's config.json is a FIFO (resume)", "train --workdir W")(
    lambda ctx: _workdir_fifo(ctx, "config.json", "train"))


@case("8", "workdir", "a file of the checkpoint (checkpoints/2/_CHECKPOINT_METADATA) is a FIFO", "export --workdir W")
def _(ctx):
    return _workdir_fifo(ctx, os.path.join("checkpoints", "2", "_CHECKPOINT_METADATA"), "export")


@case("8", "evaluate", "--models A=FIFO", "evaluate --models A=fifo")
def _(ctx):
    return _fifo_refusal(ctx, ["evaluate", "--config", SMOKE, "--models", f"A={mkfifo(ctx.path('fifo'))}", "--out",
                               ctx.path("R")], need=("fifo",))


@case("8", "prepare", "ferplus: fer2013.csv is a FIFO", "prepare --dataset ferplus")
def _(ctx):
    mkfifo(ctx.path("fer/fer2013.csv"))
    open(ctx.path("fer/fer2013new.csv"), "w").write("x\n")
    return _fifo_refusal(ctx, ["prepare", "--dataset", "ferplus", "--manual_dir", ctx.path("fer"), "--data_dir",
                               ctx.path("tfds")], need=("fer2013.csv",))


@case("8", "prepare", "celeba: list_attr_celeba.txt is a FIFO", "prepare --dataset celeba_hair")
def _(ctx):
    os.makedirs(ctx.path("celeba/img_align_celeba"))
    mkfifo(ctx.path("celeba/list_attr_celeba.txt"))
    open(ctx.path("celeba/list_eval_partition.txt"), "w").write("")
    open(ctx.path("celeba/identity_CelebA.txt"), "w").write("")
    return _fifo_refusal(ctx, ["prepare", "--dataset", "celeba_hair", "--manual_dir", ctx.path("celeba"),
                               "--data_dir", ctx.path("tfds")], need=("list_attr_celeba.txt",))


@case("8", "prepare", "image_folder: identities.csv is a FIFO", "prepare --dataset image_folder")
def _(ctx):
    for label in ("cat", "dog"):
        images(ctx.path("A", "train", label), 2, 12)
    mkfifo(ctx.path("A/identities.csv"))
    return _fifo_refusal(ctx, ["prepare", "--dataset", "image_folder", "--manual_dir", ctx.path("A"), "--data_dir",
                               ctx.path("tfds"), "--image_size", "8"], need=("identities.csv",))


@case("8", "bench", "bench --json names a FIFO (an output path that is not a file)", "bench --json fifo")
def _(ctx):
    return _fifo_refusal(ctx, ["bench", "--config", SMOKE, "--benchmarks", "topk", "--json",
                               mkfifo(ctx.path("fifo.json"))], need=("fifo.json",))


@case("8", "mask", "--input is a FIFO", "mask --input fifo")
def _(ctx):
    return _fifo_refusal(ctx, ["mask", "--model", ctx.shared["bundle"], "--input", mkfifo(ctx.path("fifo")),
                               "--output", ctx.path("out")], need=("fifo", "FIFO"))


# ---- Class 9: release promises in every output format -----------------------------------------

_FORMAT_EXT = {"JPEG": "jpg", "JPEG2000": "jp2", "TIFF": "tif", "WEBP": "webp", "PNG": "png", "BMP": "bmp",
               "GIF": "gif", "PPM": "ppm", "TGA": "tga", "SGI": "sgi", "PCX": "pcx", "QOI": "qoi", "DDS": "dds",
               "IM": "im", "ICO": "ico", "ICNS": "icns", "BLP": "blp", "AVIF": "avif", "DIB": "dib", "MSP": "msp",
               "XBM": "xbm", "SPIDER": "spi", "EPS": "eps"}


def _format_writer(fmt):
    """A writer of a small image in ``fmt`` (the first of RGB, L, 1 its writer stores and reads back), or None."""
    rng = np.random.default_rng(0)
    for mode in ("RGB", "L", "1"):
        array = rng.integers(30, 226, (32, 32, 3) if mode == "RGB" else (32, 32), dtype=np.uint8)
        image = Image.fromarray(array).convert(mode) if mode != "RGB" else Image.fromarray(array)
        try:
            buffer = io.BytesIO()
            image.save(buffer, format=fmt)
            buffer.seek(0)
            with Image.open(buffer) as back:
                back.load()
                if back.size != image.size:
                    continue
        except Exception:
            continue
        return lambda path, im=image: im.save(path, format=fmt)
    return None


def _readable_writable_formats():
    Image.init()
    return {fmt: writer for fmt in sorted(set(Image.OPEN) & set(Image.SAVE))
            if (writer := _format_writer(fmt)) is not None}


def _black_case(ctx, fmt, write, *extra, name=None):
    name = name or f"photo.{_FORMAT_EXT.get(fmt, fmt.lower())}"
    os.makedirs(ctx.path("in"))
    write(ctx.path("in", name))
    code, log, _ = tour2.mask_cli(ctx, ctx.path("in"), ctx.path("out"), "--fill", "black", "--save_masks", *extra,
                                  bundle="bundle32")
    if traceback_in(log):
        return Verdict(f"exit {code}, traceback: {last_line(log)}", False, "traceback")
    got = [o for o in outputs(ctx.path("out")) if not o.startswith(".") and not o.endswith(".mask.png")]
    if not got:
        reason = [line.strip() for line in log.splitlines() if line.startswith("  ")]
        return Verdict(f"exit {code}; {'listed: ' + reason[0][:150] if reason else 'NOT listed'}",
                       code == 1 and bool(reason), "unnamed")
    out_path = ctx.path("out", got[0])
    masks = [o for o in outputs(ctx.path("out")) if o.endswith(".mask.png")]
    reveal = np.asarray(Image.open(ctx.path("out", masks[0]))) > 0 if masks else None
    with Image.open(out_path) as image:
        out_format = image.format
        out = np.asarray(image.convert("RGB") if image.mode in ("P", "1") else image)
    with Image.open(ctx.path("in", name)) as image:
        src = np.asarray(image.convert("RGB") if image.mode in ("P", "1") else image)
    if reveal is None or reveal.shape != out.shape[:2]:
        return Verdict(f"exit {code}; wrote {got[0]} ({out_format}) but no matching mask", False, "tour")
    hidden_values = out[~reveal]
    nonzero = int((hidden_values != 0).reshape(len(hidden_values), -1).any(-1).sum()) if hidden_values.size else 0
    # Soft values release m ⊙ x: the revealed pixels are scaled by design, only their place is checked.
    exact = out.shape == src.shape and ("soft" in extra or np.array_equal(out[reveal], src[reveal]))
    what = (f"exit {code}; wrote {got[0]} ({out_format}): {nonzero} of {int((~reveal).sum())} hidden pixels not 0"
            f"{'' if nonzero == 0 else f' (up to {int(np.abs(hidden_values.astype(np.int64)).max())})'}; revealed "
            f"pixels {'exact' if exact else 'CHANGED'}")
    return Verdict(what, nonzero == 0 and exact, "silent wrong")


for _fmt, _writer in _readable_writable_formats().items():
    case("9", "format", f"--fill black on a {_fmt} input (Image.OPEN ∩ Image.SAVE)", "mask --fill black --save_masks",
         found=_fmt == "JPEG")(lambda ctx, f=_fmt, w=_writer: _black_case(ctx, f, w))

case("9", "format", "--fill black --values soft on a JPEG input", "mask --fill black --values soft")(
    lambda ctx: _black_case(ctx, "JPEG", _format_writer("JPEG"), "--values", "soft"))


@case("9", "format", "--fill black on JPEG data in a file named .png (the content's format decides)",
      "mask --fill black")
def _(ctx):
    return _black_case(ctx, "JPEG", _format_writer("JPEG"), name="photo.png")


# ---- Class 10: names in a report are unique ---------------------------------------------------

def _names_case(ctx, models, need=()):
    return cli_refusal(ctx, "evaluate", "--config", SMOKE, "--models", models, "--out", ctx.path("R"),
                       "--eval.network.epochs=1", need=need, timeout=60)


for _name in ("Random-K", "Original", "Block", "Gaussian Blur", "Oracle", "Oracle-exact"):
    case("10", "evaluate", f"--models {_name}=B (a baseline's or Oracle's row name)", f"evaluate --models '{_name}=B'",
         found=_name == "Random-K")(lambda ctx, n=_name: _names_case(ctx, f"{n}={ctx.shared['bundle32']}", (n,)))
case("10", "evaluate", "--models A=B,A=B (twice)", "evaluate --models A=B,A=B")(
    lambda ctx: _names_case(ctx, f"A={ctx.shared['bundle32']},A={ctx.shared['bundle32']}", ("A",)))
case("10", "evaluate", "--models 'A|B=B' (a name that breaks the report's table)", "evaluate --models 'A|B=B'")(
    lambda ctx: _names_case(ctx, f"A|B={ctx.shared['bundle32']}", ("A|B",)))


@case("10", "API", "evaluate.evaluate(config, {'Random-K': bundle}) (refused before any data or training)",
      "evaluate.evaluate(config, {'Random-K': b})")
def _(ctx):
    def body():
        from jaxmask import evaluate, export
        return evaluate.evaluate(tour2.smoke_config(), {"Random-K": export.load_masker(ctx.shared["bundle32"])},
                                 progress=None)["methods"].keys()
    return api_refusal(api(ctx, body, timeout=60), types=("ValueError",), need=("Random-K",))


# ---- Driver -----------------------------------------------------------------------------

def run_tour(out_json: str, selected: list[str]) -> None:
    scratch = tempfile.mkdtemp(prefix="jaxmask-tour3-")
    shared = {"bundle": os.path.join(scratch, "bundle"), "bundle32": os.path.join(scratch, "bundle32")}
    setup = Context(scratch, shared)
    for name, size in (("bundle", 16), ("bundle32", 32)):
        code, log, _ = setup.run(lambda: tour.make_bundle(shared[name], size))
        assert code == 0, log
    results = []
    for number, (cls, area, kind, command, fn, owner) in enumerate(CASES, 1):
        if selected and not any(s in kind or s == f"#{number}" or s == f"class{cls}" for s in selected):
            continue
        root = os.path.join(scratch, f"case{number:03d}")
        os.makedirs(root)
        start = time.time()
        try:
            what, ok, fault = fn(Context(root, shared))
        except Exception as error:    # the tour itself must go on
            what, ok, fault = f"tour error: {type(error).__name__}: {error}", False, "tour"
        seconds = time.time() - start
        results.append({"n": number, "class": cls, "category": area, "kind": kind, "command": command,
                        "owner": owner, "found": kind in FOUND, "what": what.replace("\n", " ").replace("|", "/"),
                        "ok": bool(ok), "fault": fault, "seconds": round(seconds, 1)})
        print(f"{number:3d} {'ok ' if ok else 'BAD'} {seconds:5.1f}s [{cls}] {kind}: "
              f"{'' if ok else '(' + str(fault) + ') '}{what}", flush=True)
        with open(out_json, "w") as f:
            json.dump(results, f, indent=1)
    shutil.rmtree(scratch, ignore_errors=True)


def _short(text: str, limit: int = 170) -> str:
    text = re.sub(r"/tmp/jaxmask-tour3-[^/ ]+/case\d+/?", "", text)
    text = re.sub(r"/tmp/jaxmask-tour3-[^/ ]+/", "", text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _label(r):
    return ("(issue) " if r.get("found") else "") + ("(lead) " if r.get("owner") == "lead" else "") + r["kind"]


def table(before_json: str, after_json: str, before_name="e3cb9dc", after_name="issue25") -> str:
    before = {r["kind"]: r for r in json.load(open(before_json))}
    after = json.load(open(after_json))
    lines = [f"| # | class | area | kind | command | before ({before_name}) | after ({after_name}) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in after:
        b = before.get(r["kind"])
        b_text = "not run" if b is None else (f"**{'ok' if b['ok'] else 'BAD'}**"
                                              + ("" if b["ok"] else f" ({b['fault']})") + f" — {_short(b['what'])}")
        lines.append(f"| {r['n']} | {r['class']} | {r['category']} | {_label(r)} | `{r['command']}` | {b_text} | "
                     f"**{'ok' if r['ok'] else 'BAD'}**{'' if r['ok'] else ' (' + str(r['fault']) + ')'} — "
                     f"{_short(r['what'])} |")
    return "\n".join(lines)


def summary(before_json: str, after_json: str) -> str:
    before = {r["kind"]: r for r in json.load(open(before_json))}
    after = json.load(open(after_json))
    rows = ["| class | kinds (from the issue) | before: ok / BAD | after: ok / BAD |", "| --- | --- | --- | --- |"]
    classes = sorted({r["class"] for r in after}, key=int)
    for cls in classes + ["all", "all but the lead's"]:
        rs = [r for r in after if cls == "all" or r["class"] == cls
              or (cls == "all but the lead's" and r["owner"] != "lead")]
        nb = sum(1 for r in rs if before.get(r["kind"], {}).get("ok"))
        na = sum(1 for r in rs if r["ok"])
        found = sum(1 for r in rs if r.get("found"))
        label = f"{cls} (lead)" if cls == "3" else cls
        rows.append(f"| {label} | {len(rs)} ({found}) | {nb} / {len(rs) - nb} | {na} / {len(rs) - na} |")
    rows += ["", "| fault | before | after | after, the lead's kinds left out |", "| --- | --- | --- | --- |"]
    for fault in FAULTS:
        nb = sum(1 for r in before.values() if not r["ok"] and r.get("fault") == fault)
        na = sum(1 for r in after if not r["ok"] and r.get("fault") == fault)
        nm = sum(1 for r in after if not r["ok"] and r.get("fault") == fault and r["owner"] != "lead")
        rows.append(f"| {fault} | {nb} | {na} | {nm} |")
    return "\n".join(rows)


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if sys.argv[1] == "--table":
        print(summary(sys.argv[2], sys.argv[3]))
        print()
        print(table(sys.argv[2], sys.argv[3]))
    elif sys.argv[1] == "--list":
        for number, (cls, area, kind, command, _, owner) in enumerate(CASES, 1):
            print(f"{number:3d} [{cls:>2}] {area:9s} {'(issue) ' if kind in FOUND else ''}"
                  f"{'(lead) ' if owner == 'lead' else ''}{kind}")
    else:
        run_tour(sys.argv[1], sys.argv[2:])
