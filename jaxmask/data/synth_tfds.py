"""``synth_faces`` as a tfds dataset (ArrayRecord): SynthFaces written to disk.

Where the data comes from: nowhere — ``jaxmask.data.synthetic.generate``
renders it deterministically from the config (task, size, identities, seed,
counts), so no manual dir is needed. The in-memory ``SynthFacesSource`` stays
the default (fastest); this builder exists so SynthFaces goes through exactly
the tfds → grain path the real datasets use (benchmarks, multi-host runs with
large counts, sharing a fixed copy).

Records match the in-memory source: ``image`` (S, S, 3) uint8 PNG, ``label``,
``identity``, and the ground-truth ``task_mask`` / ``identity_mask`` as
(S, S, 1) 0/1 PNGs; ``name`` is ``<split>/<index>`` (the index into
``generate(spec, split, n)``).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from jaxmask.data import synthetic
from jaxmask.data import tfds_builders as common


@dataclasses.dataclass(eq=False, kw_only=True)
class SynthConfig(tfds.core.BuilderConfig):
    task: str = "hair"
    image_size: int = 64
    num_identities: int = 20
    seed: int = 0
    num_train: int = 8000
    num_validation: int = 1000
    num_test: int = 2000
    channels: int = 3      # SynthFaces is always RGB; here for the shared features

    @property
    def spec(self) -> synthetic.SynthFacesSpec:
        return synthetic.SynthFacesSpec(task=self.task, image_size=self.image_size,
                                        num_identities=self.num_identities, seed=self.seed)

    def count(self, split: str) -> int:
        return {"train": self.num_train, "validation": self.num_validation, "test": self.num_test}[split]


def config_name(task: str, image_size: int, num_identities: int, seed: int,
                num_train: int, num_validation: int, num_test: int) -> str:
    """Every generation parameter is in the name, so two variants never share a directory."""
    return f"{task}_{image_size}px_{num_identities}id_seed{seed}_{num_train}-{num_validation}-{num_test}"


def make_config(task: str = "hair", image_size: int = 64, num_identities: int = 20, seed: int = 0,
                num_train: int = 8000, num_validation: int = 1000, num_test: int = 2000) -> SynthConfig:
    params = dict(task=task, image_size=int(image_size), num_identities=int(num_identities), seed=int(seed),
                  num_train=int(num_train), num_validation=int(num_validation), num_test=int(num_test))
    config = SynthConfig(name=config_name(**params), description=f"SynthFaces {params}", **params)
    config.spec  # validates task/size/identities/seed now, not mid-build
    if min(config.num_train, config.num_validation, config.num_test) < 0:
        raise ValueError(f"SynthFaces counts must be >= 0, got {params}")
    return config


def _mask_image(mask: np.ndarray) -> Image.Image:
    # 0/1 rather than 0/255: the decoded value is the mask itself.
    return Image.fromarray(mask.astype(np.uint8))


class SynthFaces(common.JaxmaskBuilder):
    """Procedural faces with identity, task label and ground-truth region masks; ArrayRecord."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [make_config("hair"), make_config("expression"), make_config("earring")]

    def class_names(self) -> tuple[str, ...]:
        return synthetic.TASK_CLASSES[self.builder_config.task]

    def _info(self) -> tfds.core.DatasetInfo:
        size = self.builder_config.image_size
        mask = lambda: tfds.features.Image(shape=(size, size, 1), encoding_format="png")
        return self._info_from(__doc__, "", extra_features={"task_mask": mask(), "identity_mask": mask()})

    def _split_generators(self, dl_manager):
        return {split: self._generate_examples(split) for split in common.SPLITS
                if self.builder_config.count(split) > 0}

    def _generate_examples(self, split):
        def examples():
            # Rendered when tfds reaches this split, so only one split is in memory.
            arrays = synthetic.generate(self.builder_config.spec, split, self.builder_config.count(split))
            for index in range(len(arrays["label"])):
                name = f"{split}/{index:07d}"
                yield name, {"image": Image.fromarray(arrays["image"][index]),
                             "label": int(arrays["label"][index]),
                             "identity": int(arrays["identity"][index]), "name": name,
                             "task_mask": _mask_image(arrays["task_mask"][index]),
                             "identity_mask": _mask_image(arrays["identity_mask"][index])}
        return self.emit(split, examples())
