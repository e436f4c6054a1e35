"""dlib face similarity on the real photos that scikit-image and matplotlib ship.

Skipped when the ``jaxmask[facesim]`` extra (dlib-bin, face_recognition_models)
or the photo packages (scikit-image, matplotlib) are not installed.
"""

import numpy as np
import pytest

from jaxmask import baselines, facesim

pytestmark = pytest.mark.skipif(not facesim.available(), reason=f"facesim extra missing: {facesim.PIP_LINE}")


@pytest.fixture(scope="module")
def photos():
    data = pytest.importorskip("skimage.data")
    cbook = pytest.importorskip("matplotlib.cbook")
    from PIL import Image
    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as image:
        hopper = np.asarray(image.convert("RGB"))
    return {"astronaut": data.astronaut(), "hopper": hopper}


@pytest.fixture(scope="module")
def model():
    return facesim.embedder()


def test_identical_image_is_fully_similar(model, photos):
    for photo in photos.values():
        result = model.compare(photo, photo)
        assert result["similarity"] > 0.999 and result["distance"] < 1e-6


def test_different_people_are_dissimilar(model, photos):
    astronaut, hopper = photos["astronaut"], photos["hopper"]
    a = model.descriptor(astronaut, model.landmarks(astronaut))
    b = model.descriptor(hopper, model.landmarks(hopper))
    distance = np.linalg.norm(a - b)
    cosine = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    assert distance > facesim.SAME_PERSON_DISTANCE     # dlib's own different-person rule
    assert cosine < 0.95


def test_blacked_out_face_is_less_similar(model, photos):
    astronaut = photos["astronaut"]
    face = model.landmarks(astronaut)[0].rect
    blacked = astronaut.copy()
    blacked[face.top():face.bottom(), face.left():face.right()] = 0
    result = model.compare(astronaut, blacked)
    assert result["similarity"] < 0.95 and result["distance"] > facesim.SAME_PERSON_DISTANCE


def test_small_images_and_baselines(model, photos):
    """The evaluation's path: 64×64 float images (upsampled for detection), baselines vs original."""
    from PIL import Image
    astronaut = photos["astronaut"]
    face = model.landmarks(astronaut)[0].rect
    crop = astronaut[face.top() - 40:face.bottom() + 25, face.left() - 30:face.right() + 30]
    small = np.asarray(Image.fromarray(crop).resize((64, 64)), np.float32)[None] / 255
    box = (0.5, 0.5, 0.5)
    blocked = baselines.block(small, box)[0]
    blurred = baselines.gaussian_blur(small, box, kernel_size=9)[0]
    same = facesim.mean_similarity(small, small)
    assert same["count"] == 1 and same["similarity"] > 0.999
    faces = facesim.original_faces(small)          # detect once, compare many releases
    assert facesim.mean_similarity(small, small, faces) == same
    block_similarity = facesim.mean_similarity(small, blocked)["similarity"]
    blur_similarity = facesim.mean_similarity(small, blurred)["similarity"]
    assert block_similarity < blur_similarity < 0.999


def test_no_face_gives_none_and_nan(model):
    noise = np.random.default_rng(0).random((1, 64, 64, 3)).astype(np.float32)
    assert model.compare(noise[0], noise[0]) is None
    result = facesim.mean_similarity(noise, noise)
    assert result["count"] == 0 and result["total"] == 1 and np.isnan(result["similarity"])


def test_evaluate_runs_dlib_when_asked(tmp_path):
    """--eval.dlib=on: SynthFaces drawings have no detectable face, so the column is NaN with n=0."""
    from test_evaluate import random_masker_state, tiny_eval_config
    from conftest import load_config
    from jaxmask import evaluate, report
    from jaxmask.export import export_masker, load_masker
    config = load_config("synth_hair", "smoke")
    bundle = load_masker(export_masker(random_masker_state(config), config, str(tmp_path / "m"), step=0))
    eval_config = tiny_eval_config()
    eval_config.dlib, eval_config.dlib_images, eval_config.mask_only, eval_config.k_sweep = "on", 4, False, ()
    results = evaluate.evaluate(config, {"Ours": bundle}, eval_config, progress=None)
    row = results["methods"]["Ours"]
    assert row["n_dlib"] == 0 and np.isnan(row["dlib_similarity"])
    assert "dlib face similarity" in report.markdown(results, {})
