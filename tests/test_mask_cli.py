"""`jaxmask mask`: folder in, folder out; any size and mode; bad files listed; nothing written outside."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO
from PIL import Image
from test_export import IMAGE_SIZE, random_state, small_config

import jaxmask
from jaxmask import export, masking

K = round(0.25 * IMAGE_SIZE * IMAGE_SIZE)
BAD = {"empty.png": "empty file", "broken.jpg": "truncated", "notes.txt": "not an image"}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    config = small_config()
    path = export.export_masker(random_state(config), config, tmp_path_factory.mktemp("m") / "masker", step=3)
    return jaxmask.load_masker(path)


def write_inputs(root):
    """Mixed sizes and modes (all ≥ the model's 16 px), a zero-byte file, a truncated JPEG, a non-image."""
    rng = np.random.default_rng(0)
    pixels = lambda *shape, high=256, dtype=np.uint8: rng.integers(1, high, shape).astype(dtype)
    images = {
        "rgb.png": Image.fromarray(pixels(24, 32, 3)),
        "same size.png": Image.fromarray(pixels(16, 16, 3)),
        "sub/rgba.png": Image.fromarray(pixels(17, 20, 4)),
        "sub/deeper/grey.jpg": Image.fromarray(pixels(30, 40)),
        "grey16.png": Image.fromarray(pixels(23, 19, high=65536, dtype=np.uint16)),
        "sub/palette.gif": Image.fromarray(pixels(18, 18, 3)).convert("P"),
        "ünïcode näme.png": Image.fromarray(pixels(16, 48)),
    }
    for name, image in images.items():
        os.makedirs(os.path.dirname(root / name), exist_ok=True)
        image.save(root / name)
    (root / "empty.png").write_bytes(b"")
    jpeg = (root / "sub" / "deeper" / "grey.jpg").read_bytes()
    (root / "broken.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (root / "notes.txt").write_text("not an image\n")
    return sorted(images)


def model_resolution(mask):
    """The model-resolution mask a nearest-upsampled (H, W) mask came from: sample the pixel centres."""
    rows = ((np.arange(IMAGE_SIZE) + 0.5) * mask.shape[0] / IMAGE_SIZE).astype(int)
    cols = ((np.arange(IMAGE_SIZE) + 0.5) * mask.shape[1] / IMAGE_SIZE).astype(int)
    return mask[rows][:, cols]


def test_mask_command_on_a_mixed_folder(bundle, tmp_path):
    source, out = tmp_path / "in", tmp_path / "out"
    names = write_inputs(source)
    env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
    command = [sys.executable, "-m", "jaxmask.cli", "mask", "--model", bundle.path, "--input", str(source),
               "--output", str(out), "--save-masks", "--batch-size", "4", "--fill", "black"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1, done.stderr[-3000:]
    assert f"masked {len(names)} image(s)" in done.stdout
    failed = [line.strip() for line in done.stdout.splitlines() if line.startswith("  ")]
    assert sorted(line.split(":")[0] for line in failed) == sorted(BAD), done.stdout
    for line in failed:
        assert BAD[line.split(":")[0]] in line, line
    # --fill black keeps each name and format, but a lossy format (the JPEG) is released as a PNG:
    # hidden pixels are 0 in the file (issue 25).
    outputs = {name: name.replace(".jpg", ".png") for name in names}
    written = sorted(os.path.relpath(os.path.join(d, f), out) for d, _, files in os.walk(out) for f in files)
    assert written == sorted([*outputs.values()] + [n + masking.MASK_SUFFIX for n in outputs.values()])

    for name, output in outputs.items():
        original = Image.open(source / name)
        released = Image.open(out / output)
        mask = np.asarray(Image.open(out / (output + masking.MASK_SUFFIX)))
        assert released.size == original.size == mask.shape[::-1]
        assert set(np.unique(mask)) <= {0, 255}
        assert int((mask == 255).sum()) == round(0.25 * mask.size), name      # exactly k at its own size
        assert released.mode == original.mode, name     # GIF: palette again
        assert released.format == ("PNG" if name.endswith(".jpg") else original.format), name
        if original.mode != "P":     # lossless: revealed pixels exact, hidden ones 0 in every channel
            before, after = np.asarray(original), np.asarray(released)
            keep = (mask == 255)[..., None] if before.ndim == 3 else mask == 255
            np.testing.assert_array_equal(after, np.where(keep, before, 0))

    # Running again keeps the outputs; --overwrite (here through the Python API) replaces them.
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1 and "masked 0 image(s)" in done.stdout
    assert f"kept {len(names)} existing output(s)" in done.stdout
    report = masking.mask_folder(bundle, str(source), str(out), overwrite=True, progress=False, fill="black")
    assert sorted(report.written) == names and not report.kept


# The training stack: loading and applying a masker never needs it (jaxmask/export.py).
TRAINING_STACK = ("optax", "orbax", "grain", "tensorflow_datasets", "jaxmask.state", "jaxmask.steps",
                  "jaxmask.games", "jaxmask.checkpoint", "jaxmask.train", "jaxmask.parallel", "jaxmask.data")

LOADED_BY_THE_MASK_PATH = r"""
import json, sys
import numpy as np
from jaxmask import cli

def training_stack():
    return sorted(m for m in sys.modules if sys.modules[m] is not None
                  and any(m == p or m.startswith(p + ".") for p in json.loads(sys.argv[4])))

try:
    cli.main(["jaxmask", "mask", "--model", sys.argv[1], "--input", sys.argv[2], "--output", sys.argv[3],
              "--noprogress"])
    code = 0
except SystemExit as exit:
    code = exit.code or 0
after_command = training_stack()
import jaxmask
bundle = jaxmask.load_masker(sys.argv[1])
released, mask = bundle(np.zeros((2, *bundle.image_shape), np.float32))
after_api = training_stack()
import jaxmask.steps     # the control: the check sees the training stack once it is imported
print(json.dumps({"code": code, "after_command": after_command, "after_api": after_api,
                  "revealed": int(np.asarray(mask).sum()), "export": "jaxmask.export" in sys.modules,
                  "control": training_stack()}))
"""


def test_mask_path_loads_no_training_stack(bundle, tmp_path):
    """`jaxmask mask` and `jaxmask.load_masker`, in a fresh interpreter: no optax, orbax, state, steps, games."""
    source = tmp_path / "in"
    source.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3)).astype(np.uint8)).save(source / name)
    env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
    done = subprocess.run([sys.executable, "-c", LOADED_BY_THE_MASK_PATH, bundle.path, str(source),
                           str(tmp_path / "out"), json.dumps(TRAINING_STACK)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["code"] == 0 and sorted(os.listdir(tmp_path / "out")) == ["a.png", "b.png"]
    assert seen["export"] and seen["revealed"] == 2 * K
    assert seen["after_command"] == [] and seen["after_api"] == []
    assert {"optax", "jaxmask.state", "jaxmask.steps"} <= set(seen["control"])


def test_soft_values_and_topk_override(bundle, tmp_path):
    source = tmp_path / "in"
    names = write_inputs(source)
    report = masking.mask_folder(bundle, str(source), str(tmp_path / "out"), values="soft", topk_fraction=0.5, fill="black",
                                 save_masks=True, batch_size=3, progress=False)
    # Issue 18: soft values scale colours, which a palette cannot hold with --fill black: listed, not re-quantised.
    names.remove("sub/palette.gif")
    assert sorted(report.written) == names and report.values == "soft"
    assert "palette" in dict(report.failed)["sub/palette.gif"]
    for name in names:
        output = masking.release.output_name(name, "black")      # a JPEG is released as a PNG
        mask = np.asarray(Image.open(tmp_path / "out" / (output + masking.MASK_SUFFIX)))
        assert int((mask > 0).sum()) == round(0.5 * mask.size)
        assert len(np.unique(mask)) > 2          # soft: m ⊙ h, not 0/255


def test_nothing_is_written_outside_the_output_folder(bundle, tmp_path):
    source, out, outside = tmp_path / "in", tmp_path / "out", tmp_path / "outside"
    write_inputs(source)
    outside.mkdir()
    out.mkdir()
    os.symlink(outside, out / "sub")           # an output sub-folder that leads elsewhere
    report = masking.mask_folder(bundle, str(source), str(out), progress=False)
    assert os.listdir(outside) == []
    refused = sorted(path for path, reason in report.failed if "outside" in reason)
    assert refused == ["sub/deeper/grey.jpg", "sub/palette.gif", "sub/rgba.png"]
    assert len(report.written) == 4


def test_output_inside_the_input_is_not_read_back(bundle, tmp_path):
    source = tmp_path / "in"
    names = write_inputs(source)
    for _ in range(2):
        report = masking.mask_folder(bundle, str(source), str(source / "masked"), overwrite=True, progress=False)
        assert sorted(report.written) == names


def test_decompression_bombs_are_refused_at_pillows_limit(bundle, tmp_path, monkeypatch):
    source = tmp_path / "in"
    write_inputs(source)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 16 * 16)
    report = masking.mask_folder(bundle, str(source), str(tmp_path / "out"), progress=False)
    assert report.written == ["same size.png"]
    bombs = sorted(path for path, reason in report.failed if "decompression bomb" in reason)
    # Refused from the header, before decoding: the truncated JPEG too.
    assert bombs == sorted(["broken.jpg", "grey16.png", "rgb.png", "ünïcode näme.png", "sub/palette.gif",
                            "sub/rgba.png", "sub/deeper/grey.jpg"])


def test_upsampled_mask_keeps_model_pixels():
    small = np.random.default_rng(0).integers(0, 2, (16, 16))
    for shape in [(16, 16), (17, 40), (31, 16), (200, 123)]:
        np.testing.assert_array_equal(model_resolution(masking.upsample_nearest(small, *shape)), small)
