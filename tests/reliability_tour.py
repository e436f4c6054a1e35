"""The tour of bad and hostile inputs behind docs/reliability.md (not a pytest file: a script).

    PYTHONPATH=/path/to/checkout JAXMASK_TOUR_REPO=/path/to/checkout \
        python tests/reliability_tour.py OUT.json [case-substring ...]
    python tests/reliability_tour.py --table BEFORE.json AFTER.json     # the markdown table

Each case builds its own scratch folder, runs one jaxmask command (in a
forked child of this process, so jaxmask is imported once; the parent never
starts a JAX backend) and judges the outcome against the rules of
docs/reliability.md: "ok" or "BAD", with what happened. Run it with the
PYTHONPATH of the checkout to judge (the cases use only APIs that main has
too), as root for the tmpfs (disk-full) cases.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

# The checkout whose configs the commands read: the one on PYTHONPATH (for the "before" run, main's).
REPO = os.environ.get("JAXMASK_TOUR_REPO", os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMOKE = os.path.join(REPO, "configs", "synth_hair.py:smoke")
FAST = ["--config.predictor_steps=1", "--config.data.num_train=48",
        "--config.data.num_validation=32", "--config.num_rounds=4", "--config.eval_every=4",
        "--config.log_every=2", "--config.checkpoint_every=2"]
CASES: list[tuple[str, str, str, object]] = []     # (category, kind, command, function)


def case(category: str, kind: str, command: str):
    def register(fn):
        CASES.append((category, kind, command, fn))
        return fn
    return register


# ---- Running commands in forked children -----------------------------------------------

class Child:
    def __init__(self, fn, log):
        self.log = log
        self.pid = os.fork()
        if self.pid == 0:
            # A tour started in the background (`&`) inherits SIGINT ignored: a user's Ctrl-C is not.
            signal.signal(signal.SIGINT, signal.default_int_handler)
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            code = 0
            try:
                fn()
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                if not isinstance(e.code, (int, type(None))):
                    print(e.code, file=sys.stderr)
            except BaseException:
                import traceback
                traceback.print_exc()
                code = 99
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def wait(self, timeout: float = 300):
        deadline = time.time() + timeout
        while True:
            pid, status, usage = os.wait4(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status), open(self.log, errors="replace").read(), usage.ru_maxrss
            if time.time() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                os.wait4(self.pid, 0)
                return "timeout", open(self.log, errors="replace").read(), 0
            time.sleep(0.05)

    def output(self) -> str:
        return open(self.log, errors="replace").read() if os.path.exists(self.log) else ""


class Context:
    def __init__(self, root: str, shared: dict):
        self.root, self.shared = root, shared
        self._n = 0

    def path(self, *parts) -> str:
        return os.path.join(self.root, *parts)

    def start(self, fn) -> Child:
        self._n += 1
        return Child(fn, self.path(f".log{self._n}"))

    def run(self, fn, timeout: float = 300):
        return self.start(fn).wait(timeout)

    def cli(self, *argv, timeout: float = 300):
        """(exit code | 'timeout', output, peak RSS KB) of `jaxmask ARGV`."""
        return self.run(cli_child(argv), timeout)


def traceback_in(log: str) -> bool:
    return "Traceback (most recent call last)" in log


def last_line(log: str) -> str:
    """The line that says what happened: the error line if there is one, else the last line."""
    lines = [line for line in log.strip().splitlines() if line.strip() and not line.startswith(("I1", "W1"))]
    errors = [line for line in lines if "error" in line.lower() or line.startswith("jaxmask")]
    return ((errors or lines or ["(no output)"])[-1 if not errors else 0])[:200]


def cli_child(argv):
    """A child's body: `jaxmask ARGV` (ml_collections reads config overrides from sys.argv)."""
    def main():
        from jaxmask import cli
        sys.argv = ["jaxmask", *argv]
        cli.main(sys.argv)
    return main


def one_line_error(result) -> tuple[str, bool]:
    code, log, _ = result
    if code == "timeout":
        return "still running after the time limit (not refused up front)", False
    if traceback_in(log):
        return f"exit {code}, traceback: {last_line(log)}", False
    return f"exit {code}: {last_line(log)}", code not in (0, 99)


# ---- Fixtures -----------------------------------------------------------------------------

def save_image(path, array, **kwargs):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)


def rgb(height, width, seed=0):
    return np.random.default_rng(seed).integers(1, 256, (height, width, 3), dtype=np.uint8)


def make_bundle(path, size=16):
    """A random masker bundle (the test suite's recipe; APIs main has too)."""
    import jax
    from jaxmask import build, checkpoint, config_files, export
    config = config_files.load(SMOKE.split(":")[0], "smoke")
    config.image_size = size
    rng = np.random.default_rng(0)

    def fill(p, x):
        if x.dtype.kind != "f":
            return np.asarray(x)
        if "var" in jax.tree_util.keystr(p):
            return rng.uniform(0.5, 1.5, x.shape).astype(x.dtype)
        return (0.3 * rng.normal(size=x.shape)).astype(x.dtype)
    state = jax.tree_util.tree_map_with_path(fill, build.from_config(config).template()).replace(step=np.int32(3))
    export.export_masker(state, config, path, step=3)


def make_checkpoint(workdir, nan=False):
    import grain
    import jax
    from jaxmask import build, checkpoint, config_files
    config = config_files.load(SMOKE.split(":")[0], "smoke")
    rng = np.random.default_rng(0)
    state = jax.tree.map(lambda x: rng.normal(size=x.shape).astype(x.dtype) if x.dtype.kind == "f"
                         else np.asarray(x), build.from_config(config).template()).replace(step=np.int32(2))
    if nan:
        jax.tree.leaves(state.masker.params)[0].flat[0] = np.nan
    it = iter(grain.MapDataset.range(100).to_iter_dataset().batch(4))
    with checkpoint.TrainCheckpoints(workdir, build.from_config(config)) as checkpoints:
        checkpoints.save(2, state, it)


def revealed(path) -> tuple[int, int]:
    """(revealed pixels, all pixels) of a released image: alpha 255, or any channel non-zero."""
    a = np.asarray(Image.open(path))
    if a.ndim == 3 and a.shape[-1] in (2, 4) and Image.open(path).mode in ("RGBA", "LA"):
        return int((a[..., -1] > 0).sum()), a.shape[0] * a.shape[1]
    nz = a != 0 if a.ndim == 2 else (a != 0).any(-1)
    return int(nz.sum()), a.shape[0] * a.shape[1]


def outputs(folder) -> list[str]:
    if not os.path.isdir(folder):
        return []
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs)


def mask_cli(ctx, inp, out, *extra, timeout=300):
    return ctx.cli("mask", "--model", ctx.shared["bundle"], "--input", inp, "--output", out, "--noprogress",
                   *extra, timeout=timeout)


def listed(log, name) -> bool:
    return any(line.startswith("  ") and name in line for line in log.splitlines())


# ---- mask: originals and outputs (rule 1) -----------------------------------------------

@case("mask", "output folder contains the input (d/in, d/in/in/a.png), --overwrite", "mask --input d/in --output d --overwrite")
def _(ctx):
    save_image(ctx.path("d/in/a.png"), rgb(20, 20))
    save_image(ctx.path("d/in/in/a.png"), rgb(20, 20, 1))
    before = open(ctx.path("d/in/a.png"), "rb").read()
    code, log, _ = mask_cli(ctx, ctx.path("d/in"), ctx.path("d"), "--overwrite")
    same = open(ctx.path("d/in/a.png"), "rb").read() == before
    return f"exit {code}; original d/in/a.png {'unchanged' if same else 'REPLACED'}: {last_line(log)}", same and code != 0


@case("mask", "output folder = input folder", "mask --input in --output in")
def _(ctx):
    save_image(ctx.path("in/a.png"), rgb(16, 16))
    return one_line_error(mask_cli(ctx, ctx.path("in"), ctx.path("in")))


@case("mask", "output folder inside the input, run twice", "mask --input in --output in/masked --overwrite (x2)")
def _(ctx):
    save_image(ctx.path("in/a.png"), rgb(16, 16))
    mask_cli(ctx, ctx.path("in"), ctx.path("in/masked"), "--overwrite")
    code, log, _ = mask_cli(ctx, ctx.path("in"), ctx.path("in/masked"), "--overwrite")
    ok = code == 0 and "masked 1 image" in log
    return f"exit {code}: {last_line(log.splitlines()[0] if log else log)}", ok


@case("mask", "--output is an existing file", "mask --output file")
def _(ctx):
    save_image(ctx.path("in/a.png"), rgb(16, 16))
    open(ctx.path("file"), "w").write("x")
    verdict = one_line_error(mask_cli(ctx, ctx.path("in"), ctx.path("file")))
    return verdict[0], verdict[1] and open(ctx.path("file")).read() == "x"


@case("mask", "--input is a file", "mask --input file")
def _(ctx):
    open(ctx.path("file"), "w").write("x")
    return one_line_error(mask_cli(ctx, ctx.path("file"), ctx.path("out")))


@case("mask", "--input does not exist", "mask --input nowhere")
def _(ctx):
    return one_line_error(mask_cli(ctx, ctx.path("nowhere"), ctx.path("out")))


@case("mask", "--model does not exist", "mask --model nowhere")
def _(ctx):
    os.makedirs(ctx.path("in"))
    return one_line_error(ctx.cli("mask", "--model", ctx.path("nowhere"), "--input", ctx.path("in"),
                                  "--output", ctx.path("out")))


@case("mask", "existing outputs without --overwrite", "mask twice into one folder")
def _(ctx):
    save_image(ctx.path("in/a.png"), rgb(16, 16))
    mask_cli(ctx, ctx.path("in"), ctx.path("out"))
    stamp = os.stat(outputs_path := os.path.join(ctx.path("out"), outputs(ctx.path("out"))[0])).st_mtime_ns
    code, log, _ = mask_cli(ctx, ctx.path("in"), ctx.path("out"))
    kept = os.stat(outputs_path).st_mtime_ns == stamp
    return f"exit {code}; existing output {'kept' if kept else 'replaced'}; 'kept 1' reported", kept and "kept 1" in log


@case("mask", "output sub-folder is a symlink leading outside the output", "mask --output out (out/sub -> elsewhere)")
def _(ctx):
    save_image(ctx.path("in/sub/a.png"), rgb(16, 16))
    os.makedirs(ctx.path("out"))
    os.makedirs(ctx.path("elsewhere"))
    os.symlink(ctx.path("elsewhere"), ctx.path("out/sub"))
    code, log, _ = mask_cli(ctx, ctx.path("in"), ctx.path("out"))
    clean = os.listdir(ctx.path("elsewhere")) == []
    return f"exit {code}; nothing written elsewhere: {clean}; listed: {listed(log, 'sub/a.png')}", clean and code == 1


@case("mask", "output name collision a.jpg + a.png (alpha release maps .jpg to .png)", "mask (default fill)")
def _(ctx):
    save_image(ctx.path("in/a.jpg"), rgb(16, 16))
    save_image(ctx.path("in/a.png"), rgb(16, 16, 1))
    code, log, _ = mask_cli(ctx, ctx.path("in"), ctx.path("out"))
    outs = outputs(ctx.path("out"))
    ok = len(outs) == len(set(outs)) and (len(outs) == 2 or (code == 1 and listed(log, "a.png")))
    return f"exit {code}; outputs {outs}", ok


@case("mask", "input named like another input's mask file (x.png + x.png.mask.png, --save_masks)", "mask --save_masks")
def _(ctx):
    save_image(ctx.path("in/x.png"), rgb(16, 16))
    save_image(ctx.path("in/x.png.mask.png"), rgb(16, 16, 1))
    code, log, _ = mask_cli(ctx, ctx.path("in"), ctx.path("out"), "--save_masks")
    listed_one = listed(log, "x.png.mask.png") or listed(log, "x.png")
    return f"exit {code}; outputs {outputs(ctx.path('out'))}; collision listed: {listed_one}", code == 1 and listed_one


# ---- mask: every entry accounted for (rule 3) ------------------------------------------

def _entry_case(ctx, make, name, expect_listed=True):
    save_image(ctx.path("in/ok.png"), rgb(16, 16))
    make()
    code, log, _ = mask_cli(ctx, ctx.path("in"), ctx.path("out"))
    is_listed = listed(log, name)
    masked = any(o.startswith(os.path.splitext(name)[0]) for o in outputs(ctx.path("out")))
    if expect_listed:
        return (f"exit {code}; {name} {'listed' if is_listed else 'NOT listed'}; masked: {masked}",
                is_listed and code == 1 and not masked)
    return f"exit {code}; {name} masked: {masked}", masked


@case("mask", "file symlink leading outside the input folder", "mask (in/leak.png -> ../secret.png)")
def _(ctx):
    save_image(ctx.path("secret.png"), rgb(16, 16, 2))
    return _entry_case(ctx, lambda: os.symlink(ctx.path("secret.png"), ctx.path("in/leak.png")), "leak.png")


@case("mask", "folder symlink leading outside the input folder", "mask (in/leakdir -> ../private)")
def _(ctx):
    save_image(ctx.path("private/p.png"), rgb(16, 16, 2))
    return _entry_case(ctx, lambda: os.symlink(ctx.path("private"), ctx.path("in/leakdir")), "leakdir")


@case("mask", "symlink loop", "mask (in/loop -> in/loop)")
def _(ctx):
    return _entry_case(ctx, lambda: os.symlink(ctx.path("in/loop"), ctx.path("in/loop")), "loop")


@case("mask", "dangling symlink", "mask (in/gone.png -> missing)")
def _(ctx):
    return _entry_case(ctx, lambda: os.symlink(ctx.path("missing.png"), ctx.path("in/gone.png")), "gone.png")


@case("mask", "FIFO named like an image", "mask (mkfifo in/pipe.png)")
def _(ctx):
    return _entry_case(ctx, lambda: os.mkfifo(ctx.path("in/pipe.png")), "pipe.png")


@case("mask", "unix socket in the input folder", "mask (socket in/sock)")
def _(ctx):
    holder = []

    def make():
        s = socket.socket(socket.AF_UNIX)
        s.bind(ctx.path("in/sock"))
        holder.append(s)
    result = _entry_case(ctx, make, "sock")
    holder[0].close()
    return result


@case("mask", "character device node named like an image", "mask (mknod)")
def _(ctx):
    return _entry_case(ctx, lambda: os.mknod(ctx.path("in/dev.png"), 0o600 | 0o020000, os.makedev(1, 3)), "dev.png")


@case("mask", "chmod 000 sub-folder (run as root: still readable)", "mask (chmod 000 in/locked)")
def _(ctx):
    save_image(ctx.path("in/locked/a.png"), rgb(16, 16))
    os.chmod(ctx.path("in/locked"), 0)
    code, log, _ = mask_cli(ctx, ctx.path("in"), ctx.path("out"))
    os.chmod(ctx.path("in/locked"), 0o755)
    got = outputs(ctx.path("out"))
    return f"exit {code}; as root the folder is read: outputs {got}", bool(got) or listed(log, "locked")


@case("mask", "symlink inside the input to another input file", "mask (in/alias.png -> in/ok.png)")
def _(ctx):
    return _entry_case(ctx, lambda: os.symlink(ctx.path("in/ok.png"), ctx.path("in/alias.png")), "alias.png",
                       expect_listed=False)


# ---- mask: bad and odd files ------------------------------------------------------------

def _file_case(ctx, name, write, expect="masked", check=None):
    os.makedirs(ctx.path("in"), exist_ok=True)
    write(ctx.path("in", name))
    code, log, _ = mask_cli(ctx, ctx.path("in"), ctx.path("out"), *(check or ()))
    got = outputs(ctx.path("out"))
    if expect == "masked":
        ok = code == 0 and len(got) == 1
        detail = f"exit {code}; wrote {got}"
        if got:
            n, total = revealed(os.path.join(ctx.path("out"), got[0]))
            detail += f", revealed {n}/{total}"
        return detail, ok
    ok = code == 1 and listed(log, name) and not got and not traceback_in(log)
    reason = [line.strip() for line in log.splitlines() if line.startswith("  ")]
    return f"exit {code}; {reason[0][:120] if reason else 'not listed'}", ok


def _saver(array, **kwargs):
    return lambda path: save_image(path, array, **kwargs)


for _name, _array, _kw in [
        ("grey16.png", np.random.default_rng(0).integers(1, 65535, (20, 20)).astype(np.uint16), {}),
        ("one_bit.png", None, {}), ("palette.gif", None, {}), ("cmyk.jpg", None, {}), ("rgba.png", None, {}),
        ("la.png", None, {}), ("float.tif", np.random.default_rng(0).uniform(size=(20, 20)).astype(np.float32), {}),
        ("image.webp", rgb(20, 20), {}), ("image.bmp", rgb(20, 20), {}), ("UPPER.PNG", rgb(20, 20), {}),
        ("name with spaces ünï.png", rgb(20, 20), {}), ("-leading-dash.png", rgb(20, 20), {}),
        ("new\nline.png", rgb(20, 20), {}), (("x" * 240) + ".png", rgb(20, 20), {})]:
    def _make(name=_name, array=_array, kw=_kw):
        def write(path):
            if name == "one_bit.png":
                Image.fromarray(rgb(20, 20)[..., 0] > 128).save(path)
            elif name == "palette.gif":
                Image.fromarray(rgb(20, 20)).convert("P").save(path)
            elif name == "cmyk.jpg":
                Image.fromarray(rgb(20, 20)).convert("CMYK").save(path)
            elif name == "rgba.png":
                a = np.concatenate([rgb(20, 20), np.full((20, 20, 1), 128, np.uint8)], -1)
                Image.fromarray(a).save(path)
            elif name == "la.png":
                Image.fromarray(rgb(20, 20)[..., :2].copy(), mode="LA").save(path)
            else:
                save_image(path, array, **kw)
        return write
    case("mask", f"image kind: {_name[:40]!r}", "mask")(lambda ctx, n=_name, w=_make(): _file_case(ctx, n, w))


@case("mask", "non-UTF-8 bytes in a file name", "mask (in/b'\\xff.png')")
def _(ctx):
    os.makedirs(ctx.path("in"))
    save_image(os.path.join(os.fsencode(ctx.path("in")), b"\xff.png").decode("utf-8", "surrogateescape"), rgb(16, 16))
    code, log, _ = mask_cli(ctx, ctx.path("in"), ctx.path("out"))
    return f"exit {code}; wrote {len(outputs(ctx.path('out')))} file(s)", code == 0 and len(outputs(ctx.path("out"))) == 1


@case("mask", "animated GIF (3 frames)", "mask")
def _(ctx):
    os.makedirs(ctx.path("in"))
    frames = [Image.fromarray(rgb(20, 20, i)).convert("P") for i in range(3)]
    frames[0].save(ctx.path("in/anim.gif"), save_all=True, append_images=frames[1:])
    code, log, _ = mask_cli(ctx, ctx.path("in"), ctx.path("out"))
    # Issue 18: a release of the first frame drops the others, so a multi-frame file is a listed skip.
    if listed(log, "anim.gif"):
        return f"exit {code}; listed, not masked: {outputs(ctx.path('out'))}", code == 1 and not outputs(ctx.path("out"))
    return f"exit {code}; first frame masked: {outputs(ctx.path('out'))} (documented: first frame only)", code == 0


@case("mask", "multi-page TIFF (2 pages)", "mask")
def _(ctx):
    os.makedirs(ctx.path("in"))
    pages = [Image.fromarray(rgb(20, 20, i)) for i in range(2)]
    pages[0].save(ctx.path("in/pages.tif"), save_all=True, append_images=pages[1:])
    code, log, _ = mask_cli(ctx, ctx.path("in"), ctx.path("out"))
    if listed(log, "pages.tif"):
        return f"exit {code}; listed, not masked: {outputs(ctx.path('out'))}", code == 1 and not outputs(ctx.path("out"))
    return f"exit {code}; first page masked: {outputs(ctx.path('out'))} (documented: first page only)", code == 0


@case("mask", "EXIF-rotated JPEG (orientation 6)", "mask")
def _(ctx):
    os.makedirs(ctx.path("in"))
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb(20, 30)).save(ctx.path("in/rot.jpg"), exif=exif)
    code, log, _ = mask_cli(ctx, ctx.path("in"), ctx.path("out"))
    got = outputs(ctx.path("out"))
    size = Image.open(os.path.join(ctx.path("out"), got[0])).size if got else None
    return f"exit {code}; output size {size} (upright: 20x30 → (20, 30) as W×H)", code == 0 and size == (20, 30)


for _name, _bytes, _why in [("empty.png", b"", "empty"), ("text.png", b"hello, not a png\n", "not an image"),
                            ("notes.txt", b"notes\n", "not an image"),
                            ("truncated.png", None, "truncated"), ("header_only.png", b"\x89PNG\r\n\x1a\n", "header")]:
    def _writer(name=_name, data=_bytes):
        def write(path):
            if data is None:
                save_image(path, rgb(40, 40))
                raw = open(path, "rb").read()
                open(path, "wb").write(raw[: len(raw) // 2])
            else:
                open(path, "wb").write(data)
        return write
    case("mask", f"bad file: {_name} ({_why})", "mask")(
        lambda ctx, n=_name, w=_writer(): _file_case(ctx, n, w, expect="listed"))


@case("mask", "decompression bomb (over --max_pixels)", "mask --max_pixels 100")
def _(ctx):
    return _file_case(ctx, "big.png", _saver(rgb(40, 40)), expect="listed", check=["--max_pixels", "100"])


# ---- mask: K at the released resolution (rule 4) ----------------------------------------

for _h, _w in [(8, 8), (48, 48), (7, 33), (100, 3), (1, 1)]:
    @case("mask", f"K at own size: {_h}x{_w} image on a 16-px model, K=0.25", "mask")
    def _(ctx, h=_h, w=_w):
        save_image(ctx.path("in/x.png"), rgb(h, w))
        code, log, _ = mask_cli(ctx, ctx.path("in"), ctx.path("out"))
        got = outputs(ctx.path("out"))
        # The bundle's own K (the smoke config's: 0.25 when this tour was written, 0.35 since).
        fraction = json.load(open(os.path.join(ctx.shared["bundle"], "manifest.json")))["topk_fraction"]
        want = round(fraction * h * w)
        if want == 0:
            ok = code == 1 and listed(log, "x.png") and not got
            n = revealed(os.path.join(ctx.path("out"), got[0]))[0] if got else 0
            return f"exit {code}; round(K·H·W)=0: {'refused, listed' if ok else f'revealed {n}/{h * w}'}", ok
        n, total = revealed(os.path.join(ctx.path("out"), got[0]))
        return f"exit {code}; revealed {n}/{total} = {n / total:.0%} (want {want})", n == want


# ---- mask: memory, disk (rule 5) ---------------------------------------------------------

@case("mask", "large image: 6000x6000 PNG (~100 KB file)", "mask (peak RSS above a small image's)")
def _(ctx):
    save_image(ctx.path("small/a.png"), rgb(16, 16))
    Image.new("RGB", (6000, 6000), (90, 120, 200)).save(ctx.path("in_big.png"))
    os.makedirs(ctx.path("in"))
    os.replace(ctx.path("in_big.png"), ctx.path("in/big.png"))
    _, _, base = mask_cli(ctx, ctx.path("small"), ctx.path("out_small"))
    code, log, peak = mask_cli(ctx, ctx.path("in"), ctx.path("out"))
    per_pixel = (peak - base) * 1024 / 36e6
    return f"exit {code}; {(peak - base) / 1024:.0f} MB over baseline = {per_pixel:.1f} bytes/pixel", \
        code == 0 and per_pixel <= 16


@case("mask", "disk full (1 MB tmpfs output)", "mask --output /tmpfs")
def _(ctx):
    for i in range(8):
        save_image(ctx.path(f"in/{i}.png"), rgb(600, 600, i))     # ~270 KB per release: 1 MB fills
    os.makedirs(ctx.path("full"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", ctx.path("full")], check=True)
    try:
        code, log, _ = mask_cli(ctx, ctx.path("in"), ctx.path("full"))
        leftovers = [o for o in outputs(ctx.path("full")) if os.path.basename(o).startswith(".")]   # hidden temps
        full = [line for line in log.splitlines() if "No space" in line]
        partial = []
        for o in outputs(ctx.path("full")):
            try:
                Image.open(os.path.join(ctx.path("full"), o)).load()
            except Exception:
                partial.append(o)
    finally:
        subprocess.run(["umount", ctx.path("full")])
    return (f"exit {code}; {len(full)} listed 'No space left'; partial outputs {partial}; temp leftovers "
            f"{leftovers}", code == 1 and not partial and not leftovers and not traceback_in(log))


@case("mask", "read-only output file system", "mask --output /ro")
def _(ctx):
    save_image(ctx.path("in/a.png"), rgb(16, 16))
    os.makedirs(ctx.path("ro"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", ctx.path("ro")], check=True)
    try:
        result = mask_cli(ctx, ctx.path("in"), ctx.path("ro"))
    finally:
        subprocess.run(["umount", ctx.path("ro")])
    code, log, _ = result
    return f"exit {code}: {last_line(log)}", code != 0 and not traceback_in(log)


@case("mask", "kill -9 while masking (many images), then rerun", "mask; SIGKILL; mask")
def _(ctx):
    for i in range(60):
        save_image(ctx.path(f"in/{i:02d}.png"), rgb(200, 200, i))
    child = ctx.start(cli_child(["mask", "--model", ctx.shared["bundle"], "--input", ctx.path("in"), "--output",
                                 ctx.path("out"), "--batch_size", "4", "--noprogress"]))
    deadline = time.time() + 120
    while time.time() < deadline and len(outputs(ctx.path("out"))) < 8:
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    bad = []
    for o in outputs(ctx.path("out")):
        if os.path.basename(o).startswith("."):       # a hidden temporary name (or the lock), not an output
            continue
        try:
            Image.open(os.path.join(ctx.path("out"), o)).load()
        except Exception:
            bad.append(o)
    tmp = [o for o in outputs(ctx.path("out")) if os.path.basename(o).startswith(".")]
    code, log, _ = mask_cli(ctx, ctx.path("in"), ctx.path("out"))
    return (f"no partial output under a real name ({bad}); hidden temp leftovers {len(tmp)}; rerun exit {code}",
            not bad and code == 0)


@case("mask", "--topk_fraction=1.5", "mask --topk_fraction 1.5")
def _(ctx):
    save_image(ctx.path("in/a.png"), rgb(16, 16))
    return one_line_error(mask_cli(ctx, ctx.path("in"), ctx.path("out"), "--topk_fraction=1.5"))


@case("mask", "--batch_size=0", "mask --batch_size 0")
def _(ctx):
    save_image(ctx.path("in/a.png"), rgb(16, 16))
    return one_line_error(mask_cli(ctx, ctx.path("in"), ctx.path("out"), "--batch_size=0"))


@case("mask", "empty input folder", "mask --input empty")
def _(ctx):
    os.makedirs(ctx.path("in"))
    code, log, _ = mask_cli(ctx, ctx.path("in"), ctx.path("out"))
    return f"exit {code}: {last_line(log)}", code == 0 and "masked 0" in log


# ---- bundles (rule 2) --------------------------------------------------------------------

def _bundle_copy(ctx):
    shutil.copytree(ctx.shared["bundle"], ctx.path("B"))
    return ctx.path("B")


def _edit_manifest(path, **fields):
    manifest = json.load(open(os.path.join(path, "manifest.json")))
    for key, value in fields.items():
        node = manifest
        *parents, last = key.split("__")
        for p in parents:
            node = node[p]
        node[last] = value
    json.dump(manifest, open(os.path.join(path, "manifest.json"), "w"))


def _mask_with(ctx, bundle):
    save_image(ctx.path("in/a.png"), rgb(16, 16))
    return ctx.cli("mask", "--model", bundle, "--input", ctx.path("in"), "--output", ctx.path("out"),
                   "--noprogress")


for _label, _fields in [("k edited to 256 (100% of 16x16)", {"k": 256}), ("widths edited to []", {"model__masker__widths": []}),
                        ("image_size edited to 0", {"image_size": 0}), ("topk_fraction edited to 0.9", {"topk_fraction": 0.9}),
                        ("values edited to 'hard'", {"values": "hard"}), ("lists a file '../x'", {"files__../x": {"sha256": "0"}})]:
    @case("bundle", f"manifest {_label}", "mask --model B")
    def _(ctx, fields=_fields):
        bundle = _bundle_copy(ctx)
        _edit_manifest(bundle, **fields)
        code, log, _ = _mask_with(ctx, bundle)
        got = outputs(ctx.path("out"))
        what, ok = one_line_error((code, log, 0))
        if got:
            n, total = revealed(os.path.join(ctx.path("out"), got[0]))
            what += f"; released {n}/{total} pixels"
        return what, ok and not got


@case("bundle", "manifest not JSON", "mask --model B")
def _(ctx):
    bundle = _bundle_copy(ctx)
    open(os.path.join(bundle, "manifest.json"), "w").write("{ not json")
    return one_line_error(_mask_with(ctx, bundle))


@case("bundle", "one flipped byte in masker.npz", "mask --model B")
def _(ctx):
    bundle = _bundle_copy(ctx)
    path = os.path.join(bundle, "masker.npz")
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 1
    open(path, "wb").write(bytes(data))
    return one_line_error(_mask_with(ctx, bundle))


@case("bundle", "masker.npz missing", "mask --model B")
def _(ctx):
    bundle = _bundle_copy(ctx)
    os.unlink(os.path.join(bundle, "masker.npz"))
    return one_line_error(_mask_with(ctx, bundle))


@case("bundle", "future format_version", "mask --model B")
def _(ctx):
    bundle = _bundle_copy(ctx)
    _edit_manifest(bundle, format_version=99)
    return one_line_error(_mask_with(ctx, bundle))


@case("bundle", "NaN parameters (re-signed npz)", "mask --model B")
def _(ctx):
    import hashlib
    bundle = _bundle_copy(ctx)
    path = os.path.join(bundle, "masker.npz")
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    first = sorted(arrays)[0]
    arrays[first] = np.full_like(arrays[first], np.nan)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    manifest = json.load(open(os.path.join(bundle, "manifest.json")))
    manifest["files"]["masker.npz"] = {"sha256": hashlib.sha256(open(path, "rb").read()).hexdigest(),
                                       "bytes": os.path.getsize(path)}
    if "manifest_sha256" in manifest:
        from jaxmask import export
        manifest["manifest_sha256"] = export.manifest_checksum(manifest)
    json.dump(manifest, open(os.path.join(bundle, "manifest.json"), "w"))
    code, log, _ = _mask_with(ctx, bundle)
    what, ok = one_line_error((code, log, 0))
    return what, ok and not outputs(ctx.path("out"))


@case("bundle", "export into a bundle holding a user's NOTES.txt", "export --workdir W --out B")
def _(ctx):
    bundle = _bundle_copy(ctx)
    open(os.path.join(bundle, "NOTES.txt"), "w").write("n\n")
    ctx.run(lambda: make_checkpoint(ctx.path("W")))
    code, log, _ = ctx.cli("export", "--workdir", ctx.path("W"), "--out", bundle)
    kept = os.path.exists(os.path.join(bundle, "NOTES.txt"))
    return f"exit {code}; NOTES.txt {'kept' if kept else 'DELETED'}", kept


@case("bundle", "export --out an existing non-bundle folder", "export --out dir")
def _(ctx):
    os.makedirs(ctx.path("mine"))
    open(ctx.path("mine/x"), "w").write("x")
    ctx.run(lambda: make_checkpoint(ctx.path("W")))
    verdict = one_line_error(ctx.cli("export", "--workdir", ctx.path("W"), "--out", ctx.path("mine")))
    return verdict[0], verdict[1] and os.path.exists(ctx.path("mine/x"))


@case("bundle", "export --out an existing file", "export --out file")
def _(ctx):
    open(ctx.path("file"), "w").write("x")
    ctx.run(lambda: make_checkpoint(ctx.path("W")))
    verdict = one_line_error(ctx.cli("export", "--workdir", ctx.path("W"), "--out", ctx.path("file")))
    return verdict[0], verdict[1] and open(ctx.path("file")).read() == "x"


@case("bundle", "export disk full (tmpfs of 8 KB)", "export --out /tmpfs/B")
def _(ctx):
    ctx.run(lambda: make_checkpoint(ctx.path("W")))
    os.makedirs(ctx.path("full"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", ctx.path("full")], check=True)
    try:
        code, log, _ = ctx.cli("export", "--workdir", ctx.path("W"), "--out", ctx.path("full/B"))
        left = os.listdir(ctx.path("full"))
    finally:
        subprocess.run(["umount", ctx.path("full")])
    what, ok = one_line_error((code, log, 0))
    return what + f"; left behind {left}", ok and not left


# ---- checkpoints and training (rules 2, 7) ----------------------------------------------

@case("checkpoint", "one flipped byte in checkpoints/<step>/state (8 trials)", "export --workdir W")
def _(ctx):
    ctx.run(lambda: make_checkpoint(ctx.path("W")))
    ctx.cli("export", "--workdir", ctx.path("W"), "--out", ctx.path("B_ref"))
    reference = open(ctx.path("B_ref/masker.npz"), "rb").read()
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(ctx.path("W/checkpoints/2/state")) for f in fs
                   if os.path.getsize(os.path.join(d, f)) > 64)
    refused = harmless = damaged = 0
    for trial in range(8):
        shutil.copytree(ctx.path("W"), ctx.path(f"W{trial}"))
        path = files[trial % len(files)].replace(ctx.path("W"), ctx.path(f"W{trial}"), 1)
        data = bytearray(open(path, "rb").read())
        data[np.random.default_rng(trial).integers(0, len(data))] ^= 0x10
        open(path, "wb").write(bytes(data))
        code, log, _ = ctx.cli("export", "--workdir", ctx.path(f"W{trial}"), "--out", ctx.path(f"B{trial}"))
        if code == 0:
            same = open(ctx.path(f"B{trial}/masker.npz"), "rb").read() == reference
            harmless += same
            damaged += not same
        elif not traceback_in(log):
            refused += 1
    return (f"{refused}/8 refused with one line, {harmless}/8 exported identical to the undamaged checkpoint "
            f"(flip in bytes that do not reach the values), {damaged}/8 exported DIFFERENT parameters",
            damaged == 0 and refused + harmless == 8)


@case("checkpoint", "export of a checkpoint with NaN parameters", "export --workdir W (NaN state)")
def _(ctx):
    code, log, _ = ctx.run(lambda: make_checkpoint(ctx.path("W"), nan=True))
    if code != 0:
        final = [line for line in log.strip().splitlines() if line.strip()][-1][:200]
        return f"the NaN checkpoint is never saved (API call raises): {final}", "non-finite" in log
    code, log, _ = ctx.cli("export", "--workdir", ctx.path("W"), "--out", ctx.path("B"))
    return f"saved; export exit {code}: {last_line(log)}", code != 0


@case("train", "SIGTERM during training", "train; SIGTERM after the first round")
def _(ctx):
    child = ctx.start(cli_child(["train", "--config", SMOKE, "--workdir", ctx.path("W"), *FAST,
                                 "--config.num_rounds=40"]))
    deadline = time.time() + 240
    while time.time() < deadline and "first round" not in child.output():
        time.sleep(0.1)
    os.kill(child.pid, signal.SIGTERM)
    code, log, _ = child.wait()
    return f"exit {code}: {last_line(log)}", code not in (0, "timeout")


@case("train", "two trainings on one workdir at once", "train & train (same --workdir)")
def _(ctx):
    argv = ["train", "--config", SMOKE, "--workdir", ctx.path("W"), *FAST]
    a = ctx.start(cli_child(argv))
    time.sleep(1.0)
    b = ctx.start(cli_child(argv))
    (ca, la, _), (cb, lb, _) = a.wait(), b.wait()
    records = [json.loads(line) for line in open(ctx.path("W/metrics.jsonl"))] if os.path.exists(
        ctx.path("W/metrics.jsonl")) else []
    keys = [(r["step"], r["split"]) for r in records]
    doubled = len(keys) != len(set(keys))
    return f"exits {ca}, {cb}; metrics records doubled: {doubled}", (ca != 0) != (cb != 0) and not doubled


for _label, _flag in [("num_rounds=0", "--config.num_rounds=0"), ("log_every=0", "--config.log_every=0"),
                      ("eval_every=-1", "--config.eval_every=-1"), ("checkpoint_every=0", "--config.checkpoint_every=0"),
                      ("batch_size=0", "--config.batch_size=0"), ("masker_learning_rate=nan", "--config.masker_learning_rate=nan"),
                      ("num_classes=1", "--config.num_classes=1"), ("topk_fraction=0", "--config.topk_fraction=0"),
                      ("config typo --config.topk_fracton", "--config.topk_fracton=0.1"),
                      ("override of the wrong type --config.num_rounds=abc", "--config.num_rounds=abc")]:
    @case("train", f"config: {_label}", f"train {_flag}")
    def _(ctx, flag=_flag):
        return one_line_error(ctx.cli("train", "--config", SMOKE, "--workdir", ctx.path("W"), *FAST, flag,
                                      timeout=60))


@case("train", "--config file does not exist", "train --config configs/nope.py")
def _(ctx):
    return one_line_error(ctx.cli("train", "--config", os.path.join(REPO, "configs", "nope.py"),
                                  "--workdir", ctx.path("W")))


@case("train", "--config argument unknown (:nope)", "train --config synth_hair.py:nope")
def _(ctx):
    return one_line_error(ctx.cli("train", "--config", SMOKE.replace(":smoke", ":nope"), "--workdir", ctx.path("W")))


@case("train", "--workdir is a file", "train --workdir file")
def _(ctx):
    open(ctx.path("file"), "w").write("x")
    return one_line_error(ctx.cli("train", "--config", SMOKE, "--workdir", ctx.path("file")))


@case("train", "run --workdir is a file", "run --workdir file")
def _(ctx):
    open(ctx.path("file"), "w").write("x")
    return one_line_error(ctx.cli("run", "--config", SMOKE, "--workdir", ctx.path("file"), timeout=60))


@case("train", "CelebA config, dataset not prepared", "train --config celeba_hair.py:smoke")
def _(ctx):
    return one_line_error(ctx.cli("train", "--config", os.path.join(REPO, "configs", "celeba_hair.py:smoke"),
                                  f"--config.data.data_dir={ctx.path('tfds')}", "--workdir", ctx.path("W")))


@case("train", "workdir of another model (masker_widths changed)", "train (resume with other widths)")
def _(ctx):
    ctx.run(lambda: make_checkpoint(ctx.path("W")))
    return one_line_error(ctx.cli("train", "--config", SMOKE, "--config.masker_widths=(8,32)",
                                  "--workdir", ctx.path("W")))


@case("train", "unknown command-line flag", "train --bogus")
def _(ctx):
    return one_line_error(ctx.cli("train", "--config", SMOKE, "--workdir", ctx.path("W"), "--bogus"))


@case("evaluate", "--out is an existing file", "evaluate --models A=B --out file")
def _(ctx):
    open(ctx.path("file"), "w").write("x")
    return one_line_error(ctx.cli("evaluate", "--config", SMOKE,
                                  "--models", f"A={ctx.shared['bundle32']}", "--out", ctx.path("file"),
                                  "--eval.network.epochs=1", timeout=40))


@case("evaluate", "--models without NAME=", "evaluate --models B")
def _(ctx):
    return one_line_error(ctx.cli("evaluate", "--config", SMOKE, "--models", ctx.shared["bundle"],
                                  "--out", ctx.path("r"), timeout=40))


@case("evaluate", "bundle of another image size than --config", "evaluate (16-px bundle, 32-px config)")
def _(ctx):
    return one_line_error(ctx.cli("evaluate", "--config", SMOKE, "--models", f"A={ctx.shared['bundle']}",
                                  "--out", ctx.path("r"), timeout=40))


# ---- prepare (rules 3, 6, 7) -------------------------------------------------------------

def _folder(root, classes, seed=0, n=3):
    rng = np.random.default_rng(seed)
    for label in classes:
        for i in range(n):
            save_image(os.path.join(root, "train", label, f"{i}.png"), rng.integers(0, 256, (12, 12, 3), dtype=np.uint8))


def _prepare(ctx, manual, *extra, timeout=120):
    return ctx.cli("prepare", "--dataset", "image_folder", "--manual_dir", manual, "--data_dir", ctx.path("tfds"),
                   "--image_size", "8", *extra, timeout=timeout)


@case("prepare", "second image folder into the same --data_dir", "prepare A; prepare B (same data_dir)")
def _(ctx):
    _folder(ctx.path("A"), ["cat", "dog"])
    _folder(ctx.path("B"), ["cat", "dog"], seed=1)
    _prepare(ctx, ctx.path("A"))
    code, log, _ = _prepare(ctx, ctx.path("B"))
    return f"exit {code}: {last_line(log)}", code != 0 and not traceback_in(log)


@case("prepare", "single-class image folder", "prepare (train/cat only)")
def _(ctx):
    _folder(ctx.path("A"), ["cat"])
    return one_line_error(_prepare(ctx, ctx.path("A")))


@case("prepare", "--manual_dir does not exist", "prepare --manual_dir nowhere")
def _(ctx):
    return one_line_error(_prepare(ctx, ctx.path("nowhere")))


@case("prepare", "identities.csv with a bad header", "prepare (identities.csv: a,b)")
def _(ctx):
    _folder(ctx.path("A"), ["cat", "dog"])
    open(ctx.path("A/identities.csv"), "w").write("a,b\ntrain/cat/0.png,1\n")
    return one_line_error(_prepare(ctx, ctx.path("A")))


@case("prepare", "identities.csv with malformed rows (3 columns, negative, text)", "prepare")
def _(ctx):
    _folder(ctx.path("A"), ["cat", "dog"])
    open(ctx.path("A/identities.csv"), "w").write(
        "file,identity\ntrain/cat/0.png,1,2\ntrain/cat/1.png,-4\ntrain/dog/0.png,abc\n\"unclosed,3\n")
    code, log, _ = _prepare(ctx, ctx.path("A"))
    skipped = [line for line in log.splitlines() if "identities.csv" in line]
    return f"exit {code}; {len(skipped)} row(s) listed as skipped", code == 0 and len(skipped) >= 3


@case("prepare", "corrupt image inside a label folder", "prepare")
def _(ctx):
    _folder(ctx.path("A"), ["cat", "dog"])
    open(ctx.path("A/train/cat/bad.png"), "wb").write(b"\x89PNG garbage")
    code, log, _ = _prepare(ctx, ctx.path("A"))
    return f"exit {code}; bad.png listed: {'bad.png' in log}", code == 0 and "bad.png" in log


@case("prepare", "label folder in validation/ not in train/", "prepare")
def _(ctx):
    _folder(ctx.path("A"), ["cat", "dog"])
    save_image(ctx.path("A/validation/bird/0.png"), rgb(12, 12))
    return one_line_error(_prepare(ctx, ctx.path("A")))


@case("prepare", "--data_dir is a file", "prepare --data_dir file")
def _(ctx):
    _folder(ctx.path("A"), ["cat", "dog"])
    open(ctx.path("file"), "w").write("x")
    verdict = one_line_error(ctx.cli("prepare", "--dataset", "image_folder", "--manual_dir", ctx.path("A"),
                                     "--data_dir", ctx.path("file"), "--image_size", "8"))
    return verdict[0], verdict[1] and open(ctx.path("file")).read() == "x"


@case("prepare", "ferplus fer2013.csv with a wrong header", "prepare --dataset ferplus")
def _(ctx):
    os.makedirs(ctx.path("fer"))
    open(ctx.path("fer/fer2013.csv"), "w").write("a,b,c\n1,2,3\n")
    open(ctx.path("fer/fer2013new.csv"), "w").write("x\n")
    return one_line_error(ctx.cli("prepare", "--dataset", "ferplus", "--manual_dir", ctx.path("fer"),
                                  "--data_dir", ctx.path("tfds")))


@case("prepare", "celeba list_attr_celeba.txt truncated to its header", "prepare --dataset celeba_hair")
def _(ctx):
    os.makedirs(ctx.path("celeba/img_align_celeba"))
    open(ctx.path("celeba/list_attr_celeba.txt"), "w").write("3\n")
    open(ctx.path("celeba/list_eval_partition.txt"), "w").write("")
    open(ctx.path("celeba/identity_CelebA.txt"), "w").write("")
    return one_line_error(ctx.cli("prepare", "--dataset", "celeba_hair", "--manual_dir", ctx.path("celeba"),
                                  "--data_dir", ctx.path("tfds")))


@case("train", "disk full during training (200 KB tmpfs workdir)", "train --workdir /tmpfs/W")
def _(ctx):
    os.makedirs(ctx.path("full"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", ctx.path("full")], check=True)
    try:
        code, log, _ = ctx.cli("train", "--config", SMOKE, "--workdir", ctx.path("full/W"), *FAST)
        steps = os.listdir(ctx.path("full/W/checkpoints")) if os.path.isdir(ctx.path("full/W/checkpoints")) else []
    finally:
        subprocess.run(["umount", ctx.path("full")])
    what, ok = one_line_error((code, log, 0))
    return what + f"; checkpoints left: {steps}", ok and not [s for s in steps if s.isdigit()]


# ---- Driver -----------------------------------------------------------------------------

def run_tour(out_json: str, selected: list[str]) -> None:
    scratch = tempfile.mkdtemp(prefix="jaxmask-tour-")
    shared = {"bundle": os.path.join(scratch, "bundle"), "bundle32": os.path.join(scratch, "bundle32")}
    setup = Context(scratch, shared)
    for name, size in (("bundle", 16), ("bundle32", 32)):
        code, log, _ = setup.run(lambda: make_bundle(shared[name], size))
        assert code == 0, log
    results = []
    for number, (category, kind, command, fn) in enumerate(CASES, 1):
        if selected and not any(s in kind for s in selected):
            continue
        root = os.path.join(scratch, f"case{number:03d}")
        os.makedirs(root)
        start = time.time()
        try:
            what, ok = fn(Context(root, shared))
        except Exception as error:    # the tour itself must go on
            what, ok = f"tour error: {type(error).__name__}: {error}", False
        results.append({"n": number, "category": category, "kind": kind, "command": command,
                        "what": what.replace("\n", " ").replace("|", "/"), "ok": bool(ok)})
        print(f"{number:3d} {'ok ' if ok else 'BAD'} {time.time() - start:5.1f}s {kind}: {what}", flush=True)
    with open(out_json, "w") as f:
        json.dump(results, f, indent=1)
    shutil.rmtree(scratch, ignore_errors=True)


def _short(text: str, limit: int = 170) -> str:
    import re
    text = re.sub(r"/tmp/jaxmask-tour-[^/ ]+/case\d+/", "", text).replace("/tmp/jaxmask-tour-", "")
    return text if len(text) <= limit else text[:limit - 1] + "…"


def table(before_json: str, after_json: str) -> str:
    before = {r["kind"]: r for r in json.load(open(before_json))}
    after = json.load(open(after_json))
    for r in [*before.values(), *after]:
        r["what"] = _short(r["what"])
    lines = ["| # | area | kind of bad input | command | before (main) | after (issue12) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in after:
        b = before.get(r["kind"])
        b_text = "not run" if b is None else f"**{'ok' if b['ok'] else 'BAD'}** — {b['what']}"
        lines.append(f"| {r['n']} | {r['category']} | {r['kind']} | `{r['command']}` | {b_text} | "
                     f"**{'ok' if r['ok'] else 'BAD'}** — {r['what']} |")
    nb = sum(1 for r in after if r["kind"] in before and before[r["kind"]]["ok"])
    na = sum(1 for r in after if r["ok"])
    lines.append("")
    lines.append(f"{len(after)} kinds; before: {nb} ok, {len(after) - nb} BAD; after: {na} ok, {len(after) - na} BAD.")
    return "\n".join(lines)


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if sys.argv[1] == "--table":
        print(table(sys.argv[2], sys.argv[3]))
    else:
        run_tour(sys.argv[1], sys.argv[2:])
