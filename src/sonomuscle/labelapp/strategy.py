"""Active learning by test-time-augmentation uncertainty (``sonomuscle.labelapp.uncertainty``).

For each unlabelled image the strategy scores how much the model's segmentation changes under a lateral
mirror, caches the score in the datastore's image info (keyed by the model file's time stamp, so a
retrained model scores afresh) and offers the highest. Images the model cannot take (a 2D image for a 3D
bundle, an unreadable file) are skipped with a log line (and not tried again for the same model). At most
``max_images`` images not yet scored are scored per request, drawn at random, so a large study answers in
seconds and later requests go on where earlier ones stopped.
"""

from __future__ import annotations

import logging
import os
import random

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.utils.others.generic import name_to_device

from sonomuscle.labelapp.infer import SegmentationInfer
from sonomuscle.labelapp.uncertainty import mirror_disagreement

logger = logging.getLogger(__name__)


class MirrorUncertainty(Strategy):
    """Offer the unlabelled image whose segmentation by ``task`` changes most when it is mirrored."""

    def __init__(self, name: str, task: SegmentationInfer, max_images: int = 16) -> None:
        super().__init__(f"Least certain image for {name} (segmentation change under a mirror)")
        self.name = name
        self.task = task
        self.max_images = max_images

    def __call__(self, request, datastore: Datastore):
        images = datastore.get_unlabeled_images(request.get("label_tag"), request.get("labels"))
        if not images:
            return None
        stamp = os.stat(self.task.get_path()).st_mtime
        scores = {}
        for image in images:
            cached = datastore.get_image_info(image).get("uncertainty", {}).get(self.name)
            if cached and cached.get("model_mtime") == stamp:
                scores[image] = cached["score"]
        pending = [i for i in images if i not in scores]
        random.shuffle(pending)
        for image in pending[: self.max_images]:
            scores[image] = self.score(datastore.get_image_uri(image), request)
            info = datastore.get_image_info(image).get("uncertainty", {})
            info[self.name] = {
                "score": scores[image],
                "model_mtime": stamp,
            }  # None: the bundle cannot take it
            datastore.update_image_info(image, {"uncertainty": info})
        scores = {image: score for image, score in scores.items() if score is not None}
        if not scores:
            return None
        image = max(scores, key=scores.get)
        logger.info(f"{self.name}: {len(scores)} image(s) scored; offering {image} ({scores[image]:.3f})")
        return {"id": image, "score": scores[image]}

    def score(self, path: str, request: dict) -> float | None:
        """The mirror disagreement on one image; ``None`` when the bundle cannot take it."""
        device = name_to_device(request.get("device"))
        data = {"image": path, "device": device, "model_filename": self.task.config().get("model_filename")}
        try:
            data = self.task.run_pre_transforms(data, self.task.pre_transforms(data))
        except Exception as err:  # one image the bundle cannot take must not stop the request
            logger.info(f"{self.name}: not scored: {err}")
            return None
        predict = self.task.predict_probabilities(data, device)
        foreground = slice(0 if self.task.multi_label else 1, None)  # softmax channel 0 is background
        return mirror_disagreement(predict, data["image"].as_tensor(), foreground)
