"""Masking a folder of real images with an exported masker (``jaxmask mask``).

Every entry under the input folder is accounted for: each regular file is
masked and written under the output folder at the same relative path, or
listed as skipped with the reason; the exit status is non-zero when anything
was skipped. Per-image rules (exact k at the image's own size, the alpha or
black fill, memory): jaxmask/release.py.

* Walk: symlinks inside the input folder are followed (``follow_symlinks``),
  those that lead outside it are listed, not followed, unless ``follow_outside``;
  symlink loops, dangling links, FIFOs, sockets, devices and unreadable
  folders are listed. A folder reached twice (through links) is read once.
* Outputs: ``<name>.png`` with the alpha fill (so ``a.jpg`` and ``a.png``
  would both become ``a.png``: the first in sorted order is written, the
  other listed), the input's own name and format with ``fill="black"``
  (a lossy format, JPEG and the like, becomes ``<name>.png``: hidden pixels
  are 0 in the file); ``save_masks`` adds ``<output>.mask.png`` (8-bit, 255 = revealed; soft mode
  m ⊙ h × 255).
* Nothing the user did not name as output is written: an output folder that
  contains the input folder is refused (outputs would land among the
  inputs), output paths whose real location leaves the output folder are
  refused, existing outputs are kept unless ``overwrite``, and each file is
  written to a temporary name and renamed (no partial output, and an
  existing link at the output path is replaced, never written through).
  Each temporary name is journaled in the output's lock file before the file
  exists; a run killed mid-write leaves it to the next run, which removes
  exactly the journaled files: a user's file that merely looks like one
  (``.x.png.1a2b.jaxmask-tmp``) is never touched.
* Arguments: checked like the command line's flags (jaxmask/arguments.py):
  paths not empty, bools that are bools, ``batch_size`` and ``max_pixels``
  bounded by this machine's memory before anything is allocated.
* Memory: the queue holds model-resolution inputs; an image's full pixels are
  kept only while the queued pixels stay under ``queue_bytes`` (else the
  image is decoded again when its batch is written).
"""

from __future__ import annotations

import dataclasses
import errno
import os
import stat
import sys
import time
from typing import Iterator

import numpy as np
from PIL import Image

from jaxmask import arguments, files, release, workdir
from jaxmask.release import ImageError, model_input, nearest_indices, upsample_nearest  # noqa: F401

MASK_SUFFIX = ".mask.png"
QUEUE_BYTES = 256 << 20


@dataclasses.dataclass
class MaskReport:
    """Relative paths of the written, kept (existing) and failed (with a reason) inputs."""
    input_dir: str
    output_dir: str
    k: int
    model_size: int
    values: str
    fraction: float = 0.0
    fill: str = "alpha"
    written: list[str] = dataclasses.field(default_factory=list)
    kept: list[str] = dataclasses.field(default_factory=list)
    failed: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    cleaned: list[str] = dataclasses.field(default_factory=list)    # an interrupted run's temporary files
    seconds: float = 0.0

    def summary(self) -> str:
        lines = [f"masked {len(self.written)} image(s) from {self.input_dir} into {self.output_dir} in "
                 f"{self.seconds:.1f} s: round(K·H·W) pixels revealed at each image's own size "
                 f"(K={self.fraction:g}; {self.k} of {self.model_size}x{self.model_size} at model "
                 f"resolution), values={self.values}, fill={self.fill}"]
        if self.kept:
            lines.append(f"kept {len(self.kept)} existing output(s) (--overwrite replaces them)")
        if self.cleaned:
            lines.append(f"removed {len(self.cleaned)} temporary file(s) an interrupted run left: "
                         + ", ".join(_display(path) for path in self.cleaned[:5]) + (" …" if len(self.cleaned) > 5 else ""))
        if self.failed:
            lines.append(f"failed {len(self.failed)} file(s), skipped:")
            lines += [f"  {_display(path)}: {reason}" for path, reason in self.failed]
        return "\n".join(lines)


def _display(path: str) -> str:
    # File names need not be valid UTF-8: never let printing them fail.
    return os.fsencode(path).decode("utf-8", errors="backslashreplace")


def _inside(root: str, path: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


# ---- The walk ---------------------------------------------------------------------------

def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


def scan(input_dir: str, skip_dir: str | None = None, *, follow_symlinks: bool = True,
         follow_outside: bool = False) -> tuple[list[str], list[tuple[str, str]]]:
    """(relative paths of the regular files to mask, [(relative path, reason)] of every other entry).

    ``skip_dir`` (the output folder, when it lies inside the input) is not read.
    """
    root = os.path.realpath(input_dir)
    regular: list[str] = []
    skipped: list[tuple[str, str]] = []
    seen = {root}
    stack = [""]
    while stack:
        relative_dir = stack.pop()
        try:
            with os.scandir(os.path.join(root, relative_dir)) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as error:
            skipped.append((relative_dir or ".", f"unreadable folder: {error.strerror}"))
            continue
        subdirs = []
        for entry in entries:
            rel = os.path.join(relative_dir, entry.name)
            try:
                if entry.is_symlink():
                    try:
                        target = os.stat(entry.path)
                    except OSError as error:
                        reason = "symlink loop" if error.errno == errno.ELOOP else "dangling symlink"
                        skipped.append((rel, f"{reason} → {os.readlink(entry.path)}"))
                        continue
                    real = os.path.realpath(entry.path)
                    if not _inside(root, real) and not follow_outside:
                        skipped.append((rel, f"symlink to {real}, outside the input folder: not followed "
                                             "(--follow_symlinks=all includes it)"))
                        continue
                    if not (follow_symlinks or follow_outside):
                        skipped.append((rel, "symlink: not followed (--follow_symlinks=inside includes it)"))
                        continue
                    mode = target.st_mode
                else:
                    real, mode = entry.path, entry.stat(follow_symlinks=False).st_mode
                if stat.S_ISDIR(mode):
                    real = os.path.realpath(real)
                    if real == skip_dir:
                        continue
                    if real in seen:
                        skipped.append((rel, "folder already read through another path"))
                        continue
                    seen.add(real)
                    subdirs.append(rel)
                elif stat.S_ISREG(mode):
                    regular.append(rel)
                else:
                    skipped.append((rel, f"{_kind(mode)}, not an image file"))
            except OSError as error:
                skipped.append((rel, f"cannot inspect: {error.strerror}"))
        stack.extend(reversed(subdirs))
    return sorted(regular), skipped


def iter_files(input_dir: str, skip_dir: str | None = None) -> Iterator[str]:
    """Relative paths of the regular files under ``input_dir`` (see ``scan`` for the rest)."""
    yield from scan(input_dir, skip_dir)[0]


class Progress:
    """A one-line counter on stderr (redrawn on a terminal, every 10% otherwise)."""

    def __init__(self, total: int, enabled: bool = True, stream=None):
        self.total, self.done, self.failed = total, 0, 0
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled and total > 0
        self.tty = self.enabled and self.stream.isatty()
        self._next_line = 0

    def update(self, done: int = 1, failed: int = 0) -> None:
        self.done += done
        self.failed += failed
        if not self.enabled:
            return
        text = f"masking: {self.done}/{self.total} files ({self.failed} failed)"
        if self.tty:
            self.stream.write("\r" + text + ("\n" if self.done >= self.total else ""))
            self.stream.flush()
        elif self.done >= self._next_line or self.done >= self.total:
            self.stream.write(text + "\n")
            self._next_line = self.done + max(1, self.total // 10)


# ---- The folder -------------------------------------------------------------------------

def check_folders(input_dir: str, output_dir: str, names: tuple[str, str] = ("--input", "--output")
                  ) -> tuple[str, str]:
    """(real input, real output) folders; ValueError/FileNotFoundError naming the problem and the fix.

    ``names``: how the two are named in the messages (the flags; the API passes its keywords).
    """
    input_dir = arguments.path(input_dir, names[0])
    output_dir = arguments.path(output_dir, names[1])
    in_root, out_root = os.path.realpath(input_dir), os.path.realpath(output_dir)
    if not os.path.exists(in_root):
        raise FileNotFoundError(f"input folder {input_dir} does not exist")
    if not os.path.isdir(in_root):
        what = files.describe(in_root)
        what = "" if what == "a regular file" else f" ({what})"
        raise ValueError(f"{names[0]} {input_dir} is a file, not a folder{what}: pass the folder that holds the "
                         "images")
    if os.path.exists(out_root) and not os.path.isdir(out_root):
        raise ValueError(f"{names[1]} {output_dir} exists and is not a folder ({files.describe(out_root)}): pass a "
                         "new or existing folder")
    if out_root == in_root:
        raise ValueError("the output folder must differ from the input folder")
    if _inside(out_root, in_root):
        raise ValueError(f"the output folder {output_dir} contains the input folder {input_dir}: outputs "
                         "could replace inputs; choose an output folder outside the input")
    return in_root, out_root


# Bytes per pixel of an image being released (module doc of jaxmask/release.py): binary and soft values.
BYTES_PER_PIXEL = {"binary": 12, "soft": 30}


def check_sizes(bundle, batch_size: int, max_pixels: int | None, values: str = "binary",
                names: tuple[str, str] = ("batch_size", "max_pixels")) -> None:
    """Bounds what the sizes would ask for before anything is allocated: a batch of model inputs
    (and their scores, twice over: numpy's and XLA's copies) and one image at ``max_pixels``."""
    arguments.integer(batch_size, names[0], 1)
    per_image = bundle.image_size ** 2 * (bundle.channels + 1) * 4 * 2
    arguments.check_bytes(batch_size * per_image,
                          f"{names[0]}={batch_size} (a batch of {bundle.image_size}x{bundle.image_size}x"
                          f"{bundle.channels} model inputs and their scores)",
                          f"pass a smaller {names[0]} (at most {max(1, arguments.physical_memory() // per_image)})")
    if max_pixels is not None:
        arguments.integer(max_pixels, names[1], 1)
        need = BYTES_PER_PIXEL.get(values, 30)
        arguments.check_bytes(max_pixels * need, f"{names[1]}={max_pixels} (an image that large, at ~{need} "
                              "bytes per pixel while it is released)",
                              f"pass a smaller {names[1]} (at most {arguments.physical_memory() // need})")


def mask_folder(bundle, input_dir: str, output_dir: str, *, values: str | None = None,
                topk_fraction: float | None = None, batch_size: int = 32, save_masks: bool = False,
                overwrite: bool = False, max_pixels: int | None = None, progress: bool = True,
                fill: str = "alpha", follow_symlinks: bool = True, follow_outside: bool = False,
                queue_bytes: int = QUEUE_BYTES) -> MaskReport:
    """Masks every image under ``input_dir`` into ``output_dir`` with ``bundle`` (a MaskerBundle).

    ``values``/``topk_fraction`` override the trained value mode and K;
    ``batch_size`` images go through the masker at once; ``max_pixels``
    (default Pillow's ``Image.MAX_IMAGE_PIXELS``) refuses larger images;
    ``fill``: 'alpha' (PNG with alpha, default) or 'black'. Returns the
    report; failures never stop the run.
    """
    start = time.time()
    if not hasattr(bundle, "scores") or not hasattr(bundle, "image_shape"):
        raise TypeError(f"bundle must be a loaded masker (jaxmask.load_masker(path)), got "
                        f"{type(bundle).__name__} {bundle!r:.80}")
    in_root, out_root = check_folders(input_dir, output_dir, ("input_dir", "output_dir"))
    save_masks, overwrite, progress, follow_symlinks, follow_outside = (
        arguments.boolean(value, name) for value, name in (
            (save_masks, "save_masks"), (overwrite, "overwrite"), (progress, "progress"),
            (follow_symlinks, "follow_symlinks"), (follow_outside, "follow_outside")))
    arguments.choice(fill, "fill", release.FILLS)
    values = arguments.choice(bundle.values if values is None else values, "values", ("binary", "soft"))
    fraction = bundle.topk_fraction if topk_fraction is None else arguments.fraction(topk_fraction, "topk_fraction")
    check_sizes(bundle, batch_size, max_pixels, values)
    max_pixels = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    k = bundle.num_revealed(topk_fraction)
    report = MaskReport(input_dir, output_dir, k, bundle.image_size, values, fraction, fill)
    found, skipped = scan(in_root, skip_dir=out_root, follow_symlinks=follow_symlinks, follow_outside=follow_outside)
    report.failed.extend(skipped)
    os.makedirs(out_root, exist_ok=True)
    # One writer per output folder: a second `jaxmask mask` into it is refused (jaxmask/workdir.py).
    # The lock journals every temporary file: what a killed run left is removed, and nothing else.
    with workdir.lock_folder(out_root, "jaxmask mask", "--output") as lock:
        report.cleaned = lock.remove_journaled()
        _mask_files(bundle, report, found, in_root, out_root, output_dir, values=values, fraction=fraction,
                    batch_size=min(batch_size, max(1, len(found))), save_masks=save_masks, overwrite=overwrite,
                    max_pixels=max_pixels, progress=progress, fill=fill, queue_bytes=queue_bytes, lock=lock)
    report.seconds = time.time() - start
    return report


def _mask_files(bundle, report: MaskReport, found: list[str], in_root: str, out_root: str, output_dir: str, *,
                values: str, fraction: float, batch_size: int, save_masks: bool, overwrite: bool,
                max_pixels: int, progress: bool, fill: str, queue_bytes: int, lock=None) -> None:
    """The masking itself (``mask_folder`` holds the output's lock): every file written, kept or listed."""
    size, channels = bundle.image_size, bundle.channels
    counter = Progress(len(found), progress)
    pending: list[list] = []     # [rel, pixels or None, mode, format, out path, model input]
    queued = 0

    def flush():
        nonlocal queued
        if not pending:
            return
        batch = np.zeros((batch_size, size, size, channels), np.float32)   # one compiled shape
        for i, item in enumerate(pending):
            batch[i] = item[5]
        scores = np.asarray(bundle.release_scores(batch))[..., 0]
        for (rel, pixels, mode, fmt, out_path, _), small in zip(pending, scores):
            try:
                if pixels is None:    # not queued (memory): decode again
                    pixels, mode, fmt = release.read_image(os.path.join(in_root, rel), max_pixels, fill)
                height, width = pixels.shape[:2]
                keep = release.reveal(small, height, width, release.revealed_count(fraction, height, width),
                                      bundle.cap_threshold)
                soft = upsample_nearest(small, height, width) if values == "soft" else None
                release.save_image(out_path, release.released_pixels(pixels, mode, keep, fill, soft), fmt, fill,
                                   mode, lock)
                if save_masks:
                    applied = keep if soft is None else soft * keep
                    mask_png = Image.fromarray(np.rint(applied * 255).astype(np.uint8))
                    files.write_atomically(out_path + MASK_SUFFIX, lambda tmp: mask_png.save(tmp, format="PNG"),
                                             lock)
                report.written.append(rel)
                counter.update()
            except ImageError as error:
                report.failed.append((rel, str(error)))
                counter.update(failed=1)
            except (OSError, ValueError, KeyError, TypeError) as error:
                report.failed.append((rel, f"cannot write {fmt} output: {error}"))
                counter.update(failed=1)
            pixels = None
        pending.clear()
        queued = 0

    claimed: dict[str, str] = {}       # output path → the input that writes it
    for rel in found:
        out_rel = release.output_name(rel, fill)
        out_path = os.path.join(out_root, out_rel)
        targets = [out_path] + ([out_path + MASK_SUFFIX] if save_masks else [])
        taken = [claimed[t] for t in targets if t in claimed]
        if taken:
            report.failed.append((rel, f"its output {out_rel} is also the output of {taken[0]}: rename one "
                                       "(or --fill=black keeps the name of an input in a lossless format)"))
            counter.update(failed=1)
            continue
        claimed.update((t, rel) for t in targets)
        parent = os.path.dirname(out_path)
        if not _inside(out_root, os.path.realpath(parent)):
            report.failed.append((rel, f"output folder {parent} leads outside {output_dir}: refused"))
            counter.update(failed=1)
            continue
        if not overwrite and any(os.path.lexists(t) for t in targets):
            report.kept.append(rel)
            counter.update()
            continue
        try:
            pixels, mode, fmt = release.read_image(os.path.join(in_root, rel), max_pixels, fill)
            small = model_input(pixels, mode, size, channels)
            os.makedirs(parent, exist_ok=True)
        except ImageError as error:
            report.failed.append((rel, str(error)))
            counter.update(failed=1)
            continue
        except OSError as error:
            report.failed.append((rel, f"cannot create the output folder {parent}: {error.strerror}"))
            counter.update(failed=1)
            continue
        if queued + pixels.nbytes > queue_bytes:
            pixels = None            # decoded again at write time: the queue stays bounded
        else:
            queued += pixels.nbytes
        pending.append([rel, pixels, mode, fmt, out_path, small])
        pixels = None
        if len(pending) == batch_size:
            flush()
    flush()
