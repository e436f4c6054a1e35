"""The network trained on originals, on each release: task accuracy (the evaluator), re-identification
(the attacker), embedding similarity to the original image, and dlib's face similarity on real faces."""

from __future__ import annotations

import numpy as np

from jaxmask import facesim
from jaxmask.evaluation import common
from jaxmask.evaluation.common import accuracies, cosine_similarity, use_dlib


class Evaluator(common.Evaluator):
    def __init__(self, context):
        super().__init__(context)
        self.has_identity = "identity" in context.num_classes
        self.original_embedding = context.network.embed(context.test["image"]) if self.has_identity else None
        self.dlib_faces = None
        if use_dlib(context.config, context.eval_config):
            self.dlib_originals = context.test["image"][:context.eval_config.dlib_images]
            context.say(f"dlib: finding faces on {len(self.dlib_originals)} original test images")
            self.dlib_faces = facesim.original_faces(self.dlib_originals)

    def run(self, row, released):
        context = self.context
        yield from accuracies(context.network, released.test, context.test, context.heads).items()
        if self.has_identity:
            similarity = cosine_similarity(context.network.embed(released.test), self.original_embedding)
            yield "face_similarity", float(similarity.mean())
            yield "face_similarity_se", float(similarity.std() / np.sqrt(len(similarity)))
        if self.dlib_faces is not None:
            dlib_row = facesim.mean_similarity(self.dlib_originals, released.test[:len(self.dlib_originals)],
                                               self.dlib_faces)
            yield "dlib_similarity", dlib_row["similarity"]
            yield "n_dlib", dlib_row["count"]
