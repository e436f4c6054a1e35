"""Issue 18, the second reliability pass: one test per rule, each over the class of fault, not the example.

Rules (docs/reliability.md, "The second tour"): 1 integrity all or nothing; 2 one writer per
output; 3 every input format handled faithfully or refused by name; 4 config changes on resume
derived from the state's shapes and meaning; 5 every check that needs no data before compiling;
6 crash leftovers and signals. Each test fails on babce54 (the commit this pass started from).
"""

import fcntl
import io
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib

import grain
import jax
import numpy as np
import pytest
from conftest import REPO, load_config
from PIL import Image
from test_export import IMAGE_SIZE, random_state, small_config

from jaxmask import build, checkpoint, config_checks, export, masking, metrics, release, resume
from jaxmask import report as report_files


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    config = small_config()
    return export.export_masker(random_state(config), config, tmp_path_factory.mktemp("m") / "masker", step=3)


@pytest.fixture(scope="module")
def bundle(bundle_dir):
    return export.load_masker(bundle_dir)


def _edited(bundle_dir, tmp_path, edit, name="B"):
    copy = tmp_path / name
    shutil.copytree(bundle_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    edit(manifest)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


def _resigned(manifest):
    manifest[export.MANIFEST_CHECKSUM] = export.manifest_checksum(manifest)


# ---- Rule 1: integrity is all or nothing -----------------------------------------------------

def _downgrade(version):
    def edit(manifest):
        manifest["format_version"] = version
        manifest.pop(export.MANIFEST_CHECKSUM)
        manifest["k"], manifest["topk_fraction"] = IMAGE_SIZE ** 2, 1.0      # reveal every pixel
    return edit


def test_no_field_switches_a_bundle_check_off(bundle_dir, tmp_path):
    edits = {
        "version 1, checksum deleted, K edited": _downgrade(1),
        "version true": _downgrade(True),
        "version 1.0": _downgrade(1.0),
        "version '1'": _downgrade("1"),
        "version 2 without its checksum": lambda m: m.pop(export.MANIFEST_CHECKSUM),
        "version 1 with its checksum kept, K edited": lambda m: m.update(format_version=1, k=IMAGE_SIZE ** 2,
                                                                         topk_fraction=1.0),
        "file entry without bytes": lambda m: (m["files"]["masker.npz"].pop("bytes"), _resigned(m)),
        "file entry without sha256": lambda m: (m["files"]["masker.npz"].pop("sha256"), _resigned(m)),
    }
    for i, (what, edit) in enumerate(edits.items()):
        copy = _edited(bundle_dir, tmp_path, edit, f"B{i}")
        with pytest.raises(export.BundleError):
            export.load_masker(copy)
            pytest.fail(f"{what}: loaded")
    # A genuine version-1 bundle (no manifest checksum): a missing check, refused unless accepted by name.
    old = _edited(bundle_dir, tmp_path, lambda m: (m.update(format_version=1), m.pop(export.MANIFEST_CHECKSUM)),
                  "old")
    with pytest.raises(export.BundleError, match="--accept_unverified_manifest"):
        export.load_masker(old)
    with pytest.warns(UserWarning, match="unverified"):
        assert export.load_masker(old, accept_unverified_manifest=True).k == round(0.25 * IMAGE_SIZE ** 2)


def _save_checkpoint(workdir, config, step=2):
    # Random parameters, a fresh optimiser state (random Adam moments would make a resumed run diverge).
    state = jax.tree_util.tree_map_with_path(
        lambda path, x: np.zeros_like(x) if "opt_state" in jax.tree_util.keystr(path) else x,
        random_state(config)).replace(step=np.int32(step))
    with checkpoint.TrainCheckpoints(str(workdir), build.from_config(config)) as checkpoints:
        checkpoints.save(step, state, iter(grain.MapDataset.range(8).to_iter_dataset()))
    return state


def test_a_checkpoint_without_checksums_is_used_only_when_accepted_by_name(tmp_path):
    config = small_config()
    state = _save_checkpoint(tmp_path / "W", config)
    shutil.rmtree(tmp_path / "W" / "checkpoints" / "2" / "checksums")
    with pytest.raises(ValueError, match="no checksums.*--accept_unverified_checkpoint"):
        checkpoint.restore_for_export(str(tmp_path / "W"))
    with pytest.raises(ValueError, match="no checksums"):          # resume: refused before anything compiles
        checkpoint.TrainCheckpoints(str(tmp_path / "W"), build.from_config(config))
    restored, _, step = checkpoint.restore_for_export(str(tmp_path / "W"), accept_unverified=True)
    assert step == 2
    np.testing.assert_array_equal(jax.tree.leaves(restored.masker.params)[0], jax.tree.leaves(state.masker.params)[0])


# ---- Rule 2: one writer per output ---------------------------------------------------------------

def _hold(path, pid=4242, command="jaxmask mask"):
    """What another live process holding ``path`` looks like (its own flock on its own descriptor)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, json.dumps({"command": command, "pid": pid, "host": socket.gethostname()}).encode())
    return fd


def _images(folder, n=3, size=12):
    os.makedirs(folder, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.random.default_rng(i).integers(1, 256, (size, size, 3), dtype=np.uint8)).save(
            os.path.join(folder, f"{i}.png"))


def test_every_writer_locks_its_output_and_names_the_holder(bundle, tmp_path):
    from jaxmask.commands import evaluate as evaluate_command
    _images(tmp_path / "in")
    (tmp_path / "out").mkdir()
    fd = _hold(tmp_path / "out" / ".jaxmask.lock")
    try:
        with pytest.raises(ValueError, match="being written by `jaxmask mask` \\(pid 4242"):
            masking.mask_folder(bundle, str(tmp_path / "in"), str(tmp_path / "out"), progress=False)
        assert os.listdir(tmp_path / "out") == [".jaxmask.lock"]
    finally:
        os.close(fd)
    # The holder died (its flock went with it): the lock is stale, taken over, and removed at the end.
    report = masking.mask_folder(bundle, str(tmp_path / "in"), str(tmp_path / "out"), progress=False)
    assert len(report.written) == 3 and not os.path.exists(tmp_path / "out" / ".jaxmask.lock")
    config = small_config()
    fd = _hold(tmp_path / ".B.jaxmask.lock", pid=77, command="jaxmask export")
    try:
        with pytest.raises(ValueError, match="being written by `jaxmask export` \\(pid 77"):
            export.export_masker(random_state(config), config, tmp_path / "B", step=1)
    finally:
        os.close(fd)
    assert not os.path.exists(tmp_path / "B")
    # Without --overwrite no run replaces what it did not write in this run.
    export.export_masker(random_state(config), config, tmp_path / "B", step=1)
    with pytest.raises(export.BundleError, match="--overwrite"):
        export.export_masker(random_state(config), config, tmp_path / "B", step=2)
    assert export.load_masker(tmp_path / "B").step == 1
    export.export_masker(random_state(config), config, tmp_path / "B", step=2, overwrite=True)
    assert export.load_masker(tmp_path / "B").step == 2
    (tmp_path / "R").mkdir()
    (tmp_path / "R" / "report.md").write_text("earlier")
    with pytest.raises(ValueError, match="earlier evaluation.*--overwrite"):
        report_files.check_report_folder(str(tmp_path / "R"), overwrite=False)


# ---- Rule 3: every input format handled faithfully or refused by name -----------------------------

def _storable_modes():
    """{mode: format} for each mode of Image.MODES a registered lossless writer stores as itself."""
    Image.init()
    found = {}
    for mode in Image.MODES:
        for fmt in ["PNG", "TIFF", *sorted(set(Image.SAVE) - {"PNG", "TIFF", "JPEG", "MPO", "WEBP"})]:
            try:
                buffer = io.BytesIO()
                Image.new(mode, (4, 4)).save(buffer, format=fmt)
                buffer.seek(0)
                if Image.open(buffer).mode == mode:
                    found[mode] = fmt
                    break
            except Exception:
                continue
    return found


def _mode_image(mode, rng):
    if mode == "1":
        return Image.new("1", (12, 12), 1)
    if mode in ("P", "PA"):
        image = Image.fromarray(rng.integers(1, 16, (12, 12), dtype=np.uint8), "L").convert(mode)
        image.putpalette([0, 0, 0] + [int(v) for v in rng.integers(40, 256, 765)])
        return image
    if mode == "F":
        return Image.fromarray(rng.uniform(0.05, 1, (12, 12)).astype(np.float32), "F")
    if mode == "I":
        return Image.fromarray(rng.integers(1, 60000, (12, 12)).astype(np.int32), "I")
    if mode.startswith("I;16"):
        return Image.frombytes(mode, (12, 12), rng.integers(1, 65535, (12, 12)).astype(
            ">u2" if mode == "I;16B" else "<u2").tobytes())
    return Image.frombytes(mode, (12, 12), rng.integers(1, 256, (12, 12, Image.getmodebands(mode)),
                                                         dtype=np.uint8).tobytes())


def test_every_pillow_mode_is_masked_faithfully_or_listed(bundle, tmp_path):
    rng = np.random.default_rng(0)
    modes = _storable_modes()
    assert {"1", "L", "RGB", "RGBA", "P", "I;16", "F", "CMYK"} <= set(modes)       # the derivation found them
    k = round(0.25 * 144)
    for mode, fmt in modes.items():
        for fill in ("alpha", "black"):
            folder = tmp_path / f"{mode.replace(';', '_')}_{fill}"
            path = folder / "in" / f"x.{fmt.lower()}"
            os.makedirs(path.parent)
            _mode_image(mode, rng).save(path, format=fmt)
            report = masking.mask_folder(bundle, str(path.parent), str(folder / "out"), fill=fill, progress=False)
            if report.failed:
                assert not report.written and report.failed[0][1], (mode, fill)
                continue
            out = Image.open(folder / "out" / report.written[0] if fill == "black" else
                             folder / "out" / "x.png")
            if fill == "alpha":
                assert out.mode in ("RGBA", "LA") and int((np.asarray(out)[..., -1] > 0).sum()) == k, (mode, fill)
                continue
            src = Image.open(path)
            assert {"I;16L": "I;16"}.get(out.mode, out.mode) == {"I;16L": "I;16"}.get(src.mode, src.mode), \
                (mode, "black fill changed the mode to", out.mode)
            a = np.asarray(src).reshape(12, 12, -1)
            b = np.asarray(out).reshape(12, 12, -1)
            same, hidden = (a == b).all(-1), (b == 0).all(-1)
            assert (same | hidden).all() and int(same.sum()) == k, (mode, fill)


def _png16(color_type, channels):
    rows = b"".join(b"\x00" + np.full(12 * channels, 40000).astype(">u2").tobytes() for _ in range(12))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 12, 12, 16, color_type, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def test_frames_depth_and_values_are_refused_by_name(bundle, tmp_path):
    Image.init()
    inputs = tmp_path / "in"
    inputs.mkdir()
    for fmt in sorted(Image.SAVE_ALL):          # every multi-frame writer Pillow has
        frames = [Image.fromarray(np.full((12, 12, 3), 50 * (i + 1), np.uint8)) for i in range(3)]
        buffer = io.BytesIO()
        try:
            frames[0].save(buffer, format=fmt, save_all=True, append_images=frames[1:])
            if getattr(Image.open(io.BytesIO(buffer.getvalue())), "n_frames", 1) < 3:
                continue
        except Exception:
            continue
        (inputs / f"frames_{fmt}.img").write_bytes(buffer.getvalue())
    for name, values in (("nan", np.nan), ("inf", np.inf), ("range", 200.0)):
        pixels = np.full((12, 12), 0.5, np.float32)
        pixels[3, 3] = values
        Image.fromarray(pixels, "F").save(inputs / f"float_{name}.tif")
    Image.fromarray(np.full((12, 12), 10 ** 6, np.int32), "I").save(inputs / "int_wide.tif")
    (inputs / "deep_rgb.png").write_bytes(_png16(2, 3))
    expected = {n for n in os.listdir(inputs)}
    assert len([n for n in expected if n.startswith("frames_")]) >= 3     # GIF, PNG (APNG), TIFF at least
    report = masking.mask_folder(bundle, str(inputs), str(tmp_path / "out_black"), fill="black", progress=False)
    assert {path for path, _ in report.failed} == expected and not report.written, report.summary()
    report = masking.mask_folder(bundle, str(inputs), str(tmp_path / "out_alpha"), progress=False)
    assert {path for path, _ in report.failed} == expected - {"deep_rgb.png"}, report.summary()  # 8-bit PNG: documented


def test_prepare_lists_what_is_not_an_image_file_and_bad_identities(tmp_path):
    from jaxmask.data import prepare
    root = tmp_path / "A"
    for label in ("cat", "dog"):
        _images(root / "train" / label)
    (root / "train" / "cat" / "x.png").mkdir()
    os.mkfifo(root / "train" / "cat" / "p.png")
    frames = [Image.fromarray(np.full((12, 12, 3), 60 * (i + 1), np.uint8)) for i in range(3)]
    frames[0].save(root / "train" / "dog" / "anim.png", save_all=True, append_images=frames[1:])
    (root / "identities.csv").write_text("file,identity\ntrain/cat/0.png,99999999999999999999\n"
                                         "train/cat/1.png,3000000000\ntrain/cat/2.png,²\ntrain/dog/0.png,5\n",
                                         encoding="utf-8")
    previous = signal.signal(signal.SIGALRM, lambda *a: pytest.fail("prepare blocked (reading a FIFO?)"))
    signal.alarm(120)
    try:
        result = prepare.prepare("image_folder", data_dir=str(tmp_path / "tfds"), manual_dir=str(root), image_size=8)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    skipped = dict(result.report.skipped)
    for where in ("train/cat/x.png", "train/cat/p.png", "train/dog/anim.png", "identities.csv:2",
                  "identities.csv:3", "identities.csv:4"):
        assert where in skipped, (where, skipped)


# ---- Rule 4: config changes on resume --------------------------------------------------------------

def _changed(config, name, value):
    out = config.copy_and_resolve_references()
    out.unlock()
    node = out
    *parents, leaf = name.split(".")
    for parent in parents:
        node = node[parent]
    node[leaf] = value
    return out


def test_resume_refusals_are_derived_from_the_state_and_its_meaning(smoke_config):
    saved = resume.config_dict(smoke_config)
    shapes = {"mask_channel": not smoke_config.mask_channel, "game": "paper", "obfuscator_steps": 0,
              "adversary.complement_widths": ((8, 8, 8, 16),), "adversary.pattern_weight": 0.0,
              "adversary.hidden": 32, "phi_hidden": 32, "masker_widths": (8, 32)}
    # Values other than the config's own, whatever its defaults are.
    meaning = {"topk_fraction": 0.3 if smoke_config.topk_fraction != 0.3 else 0.2,
               "mask_values": "soft" if smoke_config.mask_values == "binary" else "binary",
               "reveal": "exact" if smoke_config.reveal == "cap" else "cap", "seed": smoke_config.seed + 7,
               "task": "expression" if smoke_config.task == "hair" else "hair"}
    def shapes_of(config):
        return [(x.shape, x.dtype) for x in jax.tree.leaves(build.from_config(config).template())]
    reference = shapes_of(smoke_config)
    for name, value in {**shapes, **meaning}.items():
        current = _changed(smoke_config, name, value)
        if name in ("mask_values", "reveal") and current.reveal == "exact":   # exact-k: a game without a cap
            current = _changed(current, "game", "realx")
        if name == "task":                               # a task's own class count: a valid run's config
            current = _changed(current, "num_classes", 3 if value == "expression" else 4)
        if name == "mask_values" and value == "soft":    # soft values need an exact-k reveal
            current = _changed(_changed(current, "reveal", "exact"), "game", "realx")
        if name in shapes:     # the test's own claim, checked against the state itself
            assert shapes_of(current) != reference, name
        with pytest.raises(resume.IncompatibleCheckpointError, match=name.split(".")[-1]):
            resume.compare_configs(saved, build.from_config(current), "the checkpoint")
    for name, value in {"num_rounds": 60, "phi_learning_rate": 2e-3, "adversary.reinit_every": 7}.items():
        changed = build.from_config(_changed(smoke_config, name, value))
        assert name in resume.compare_configs(saved, changed, "the checkpoint")


def test_a_refused_resume_leaves_config_json_as_it_was(tmp_path):
    from jaxmask import train
    config = load_config("synth_hair", "smoke")
    _save_checkpoint(tmp_path / "W", config)
    (tmp_path / "W" / "config.json").write_text(config.to_json_best_effort(indent=2))
    before = (tmp_path / "W" / "config.json").read_bytes()
    start = time.time()
    other_k = 0.3 if config.topk_fraction != 0.3 else 0.2
    with pytest.raises(resume.IncompatibleCheckpointError, match="topk_fraction"):
        train.train_and_evaluate(_changed(config, "topk_fraction", other_k), str(tmp_path / "W"))
    assert time.time() - start < 30 and (tmp_path / "W" / "config.json").read_bytes() == before


# ---- Rule 5: every check that needs no data runs before the first compile ---------------------------

def test_checks_that_need_no_data_are_config_errors(smoke_config):
    from jaxmask import evaluate
    for name, value, message in [("data.num_validation", 5, "num_validation=5 is fewer than one batch"),
                                 ("data.num_train", 8, "num_train=8 is fewer than one batch"),
                                 ("topk_fraction", 1e-4, "0 pixels"),
                                 ("adversary.reinit_every", 0, "None"),
                                 ("eval_every", 0, "use None"),
                                 ("game", "nope", "game='nope'"),
                                 ("mask_gradient", "exact", "mask_gradient='exact'")]:
        with pytest.raises(config_checks.ConfigError, match=message):
            build.check_training_config(_changed(smoke_config, name, value))
    build.check_training_config(_changed(smoke_config, "adversary.reinit_every", None))   # None = never
    with pytest.raises(config_checks.ConfigError, match="image_size=4"):
        build.from_config(_changed(_changed(smoke_config, "image_size", 4), "masker_widths", (8, 8, 8, 8)))
    eval_config = evaluate.get_config()
    for name, value, message in [("k_sweep", (0.0, 2.0), "k_sweep"), ("probe_releases", ("Nope",), "Nope"),
                                 ("network.epochs", 0, "epochs"), ("batch_size", 0, "batch_size")]:
        with pytest.raises(config_checks.ConfigError, match=message):
            config_checks.check_eval_config(_changed(eval_config, name, value), smoke_config, ["Ours"])
    config_checks.check_eval_config(_changed(eval_config, "probe_releases", ("Ours", "Oracle")), smoke_config, ["Ours"])


def test_evaluate_refuses_a_bad_k_sweep_within_seconds(tmp_path):
    config = load_config("synth_hair", "smoke")       # a bundle the smoke config evaluates (32 px)
    bundle_dir = export.export_masker(random_state(config), config, tmp_path / "B", step=1)
    env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
    start = time.time()
    try:
        result = subprocess.run([sys.executable, "-m", "jaxmask.cli", "evaluate", "--config",
                                 os.path.join(REPO, "configs", "synth_hair.py:smoke"), "--models", f"A={bundle_dir}",
                                 "--out", str(tmp_path / "R"), "--k_sweep=0,2"], env=env, capture_output=True,
                                text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("still evaluating after 60 s: the K sweep is checked after the work")
    assert result.returncode == 1 and "k_sweep" in result.stderr and "Traceback" not in result.stderr
    assert time.time() - start < 30


# ---- Rule 6: crash leftovers, signals, a torn metrics.jsonl -----------------------------------------

def test_a_torn_last_metrics_line_is_tolerated_and_corruption_elsewhere_named(tmp_path):
    path = tmp_path / "metrics.jsonl"
    good = json.dumps({"step": 1, "split": "validation", "accuracy_revealed": 0.5}) + "\n"
    path.write_bytes(good.encode() + b'{"step": 2, "split": "valid')
    assert checkpoint.last_validation_metrics(str(tmp_path))["step"] == 1      # what export reads
    checkpoint.rewind_metrics(str(path), 5)               # a resume repairs the file before appending
    assert path.read_text() == good
    assert metrics.read_records(str(path)) == [json.loads(good)]
    for corrupt in (b"{garbage\n", b"[1, 2]\n", b"\xff\xfe\n"):
        path.write_bytes(good.encode() + corrupt + good.encode())
        with pytest.raises(ValueError, match=f"{path}:2"):
            checkpoint.last_validation_metrics(str(tmp_path))


def test_a_rerun_removes_what_an_interrupted_mask_left(bundle, tmp_path):
    _images(tmp_path / "in")
    masking.mask_folder(bundle, str(tmp_path / "in"), str(tmp_path / "out"), progress=False)
    # A run killed mid-write: its lock file (the journal) names the temporary file it was writing.
    (tmp_path / "out" / ".1.png.x7.jaxmask-tmp").write_bytes(b"partial")
    (tmp_path / "out" / ".jaxmask.lock").write_text(json.dumps({"command": "jaxmask mask", "pid": 4242}) + "\n"
                                                    + json.dumps({"tmp": ".1.png.x7.jaxmask-tmp"}) + "\n")
    (tmp_path / "out" / ".0.png.abcd1234.tmp").write_bytes(b"an earlier version's name: not recognised")
    (tmp_path / "out" / ".notes.tmp").write_text("a user's file: not ours")
    report = masking.mask_folder(bundle, str(tmp_path / "in"), str(tmp_path / "out"), progress=False)
    assert sorted(os.listdir(tmp_path / "out")) == [".0.png.abcd1234.tmp", ".notes.tmp", "0.png", "1.png", "2.png"]
    assert report.cleaned == [".1.png.x7.jaxmask-tmp"]


def test_sigterm_and_ctrl_c_during_mask_end_in_one_line_and_leave_nothing(bundle_dir, tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
    # Enough work that the signal lands mid-run however fast the machine (with a warm compilation
    # cache 40 images were done within the poll's reach on a quiet machine): one image a batch.
    for i in range(300):
        Image.fromarray(np.random.default_rng(i).integers(1, 256, (300, 300, 3), dtype=np.uint8)).save(
            tmp_path / f"{i:03d}.png")
    for signum, code in ((signal.SIGTERM, 143), (signal.SIGINT, 130)):
        out = tmp_path / f"out{signum}"
        child = subprocess.Popen([sys.executable, "-m", "jaxmask.cli", "mask", "--model", str(bundle_dir),
                                  "--input", str(tmp_path), "--output", str(out), "--batch_size", "1",
                                  "--noprogress"], env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                 # As from a terminal: a test run started in the background (nohup, `&`)
                                 # hands its children SIGINT ignored, and jaxmask keeps an ignored SIGINT so.
                                 preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.time() + 120
        while time.time() < deadline and len([n for n in os.listdir(out) if n.endswith(".png")] if out.exists()
                                             else []) < 1:
            time.sleep(0.01)
        child.send_signal(signum)
        stdout, stderr = child.communicate(timeout=60)
        assert child.returncode == code, stderr[-2000:]
        assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr[-2000:]
        assert not [n for n in os.listdir(out) if n.startswith(".")], os.listdir(out)
