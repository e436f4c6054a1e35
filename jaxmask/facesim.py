"""Face similarity on real faces: dlib's pretrained face-recognition ResNet (optional extra).

    pip install 'jaxmask[facesim]'     # = dlib-bin face_recognition_models

The weights ship inside the ``face_recognition_models`` wheel (nothing is
downloaded at run time). For a pair (original, released):

1. dlib's HOG frontal face detector finds the largest face on the *original*
   (small images are upsampled first: the detector needs faces of ~80 px);
2. the 5-point landmark model places that face's landmarks, on the original;
3. the same aligned chip geometry (``dlib.get_face_chip``) is cut from the
   original and from the released image, and the ResNet turns each chip into a
   128-d descriptor;
4. similarity = cosine of the two descriptors (1 = the same descriptor).
   dlib's own same-person rule is Euclidean distance < 0.6.

Using the original's landmarks for both images measures what the released
pixels still say about the face, not whether a detector can find it (a
blacked-out face has no landmarks of its own).
"""

from __future__ import annotations

import functools
import importlib.util
import os

import numpy as np

PIP_LINE = "pip install 'jaxmask[facesim]'   (or: pip install dlib-bin face_recognition_models)"
CHIP_SIZE = 150      # the ResNet's input size (dlib's documented chip)
CHIP_PADDING = 0.25
MIN_DETECT_SIDE = 256   # smaller images are upsampled to about this before detection
SAME_PERSON_DISTANCE = 0.6


def _models_dir() -> str | None:
    # Located without importing face_recognition_models: its __init__ imports
    # pkg_resources, which new setuptools no longer ship.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.join(list(spec.submodule_search_locations)[0], "models")


def available() -> bool:
    """True when dlib and the face_recognition_models weights are installed."""
    models = _models_dir()
    return (importlib.util.find_spec("dlib") is not None and models is not None
            and os.path.isfile(os.path.join(models, "dlib_face_recognition_resnet_model_v1.dat")))


def require() -> None:
    """Raises ImportError with the install line when the extra is missing."""
    if not available():
        raise ImportError(f"dlib face similarity needs the facesim extra: {PIP_LINE}")


class FaceEmbedder:
    """dlib's detector, 5-point landmark model and face-recognition ResNet, loaded once."""

    def __init__(self):
        require()
        import dlib
        models = _models_dir()
        self._dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.landmarks_model = dlib.shape_predictor(os.path.join(models, "shape_predictor_5_face_landmarks.dat"))
        self.resnet = dlib.face_recognition_model_v1(
            os.path.join(models, "dlib_face_recognition_resnet_model_v1.dat"))

    @staticmethod
    def to_uint8_rgb(image) -> np.ndarray:
        """(H, W[, C]) float in [0, 1] or uint8 → contiguous uint8 (H, W, 3)."""
        image = np.asarray(image)
        if image.dtype != np.uint8:
            image = (np.clip(image.astype(np.float32), 0, 1) * 255).round().astype(np.uint8)
        if image.ndim == 2:
            image = image[..., None]
        if image.shape[-1] == 1:
            image = np.repeat(image, 3, axis=-1)
        return np.ascontiguousarray(image[..., :3])

    def _scale(self, image: np.ndarray) -> int:
        return max(1, int(np.ceil(MIN_DETECT_SIDE / min(image.shape[:2]))))

    @staticmethod
    def _upsample(image: np.ndarray, scale: int) -> np.ndarray:
        if scale == 1:
            return image
        from PIL import Image
        height, width = image.shape[:2]
        return np.asarray(Image.fromarray(image).resize((width * scale, height * scale), Image.BICUBIC))

    def landmarks(self, original) -> tuple[object, int] | None:
        """(dlib landmarks of the largest face, upsampling factor) on ``original``, or None."""
        image = self.to_uint8_rgb(original)
        scale = self._scale(image)
        big = self._upsample(image, scale)
        faces = self.detector(big, 0 if scale > 1 else 1)
        if len(faces) == 0:
            return None
        face = max(faces, key=lambda r: r.width() * r.height())
        return self.landmarks_model(big, face), scale

    def descriptor(self, image, landmarks: tuple[object, int]) -> np.ndarray:
        """128-d float64 descriptor of the chip that ``landmarks`` cut from ``image``."""
        shape, scale = landmarks
        big = self._upsample(self.to_uint8_rgb(image), scale)
        chip = self._dlib.get_face_chip(big, shape, size=CHIP_SIZE, padding=CHIP_PADDING)
        return np.asarray(self.resnet.compute_face_descriptor(chip), np.float64)

    def compare(self, original, released) -> dict[str, float] | None:
        """{'similarity' (cosine), 'distance' (Euclidean)} of the pair; None if no face on ``original``."""
        found = self.landmarks(original)
        if found is None:
            return None
        a, b = self.descriptor(original, found), self.descriptor(released, found)
        norms = np.linalg.norm(a) * np.linalg.norm(b)
        return {"similarity": float(a @ b / norms) if norms > 0 else 0.0,
                "distance": float(np.linalg.norm(a - b))}


@functools.lru_cache(maxsize=1)
def embedder() -> FaceEmbedder:
    """The process's shared ``FaceEmbedder`` (the models take a second to load)."""
    return FaceEmbedder()


def original_faces(originals) -> list[tuple[tuple[object, int], np.ndarray] | None]:
    """Per original: (landmarks, descriptor) of its largest face, or None (no face found).

    Detection is the slow part (~0.1–0.5 s an image): compute this once and
    pass it to ``mean_similarity`` for every release of the same originals.
    """
    model = embedder()
    faces = []
    for image in originals:
        found = model.landmarks(image)
        faces.append(None if found is None else (found, model.descriptor(image, found)))
    return faces


def mean_similarity(originals, released, faces=None) -> dict[str, float]:
    """Mean cosine similarity and distance over pairs whose original has a detectable face.

    ``faces``: ``original_faces(originals)`` if already computed. Returns
    {'similarity', 'distance', 'count' (pairs with a face), 'total'}
    (similarity and distance NaN when no face was found anywhere).
    """
    model = embedder()
    faces = original_faces(originals) if faces is None else faces
    similarities, distances = [], []
    for face, image in zip(faces, released):
        if face is None:
            continue
        landmarks, a = face
        b = model.descriptor(image, landmarks)
        norms = np.linalg.norm(a) * np.linalg.norm(b)
        similarities.append(float(a @ b / norms) if norms > 0 else 0.0)
        distances.append(float(np.linalg.norm(a - b)))
    if not similarities:
        return {"similarity": float("nan"), "distance": float("nan"), "count": 0, "total": len(faces)}
    return {"similarity": float(np.mean(similarities)), "distance": float(np.mean(distances)),
            "count": len(similarities), "total": len(faces)}
