"""MONAI Label training of a sonomuscle segmentation bundle, in place of its served copy's model.

``BundleTrainTask`` overrides the training data, the trainer's ``max_epochs``, the handlers and the device.
The bundles also read ``max_epochs`` at the top (their validation schedule and learning-rate decay follow it):
with only the trainer's overridden, a short run never validated and so never saved a model. The run writes
its logs and checkpoints under the studies' ``.sonomuscle/runs/<bundle>``, starts afresh (a resumed run of
an earlier session would stop at once), and saves the best model straight over the served copy's
``models/model.pt``, which the inference task reloads when its time stamp changes.

One studies folder may hold 2D images and 3D volumes for different bundles: each bundle trains on the
labelled images of its own dimension only; an image that cannot be read is left out with a log line.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from monailabel.tasks.train.bundle import BundleTrainTask

from sonomuscle.labelapp.bundles import bundle_dims, image_dims

logger = logging.getLogger(__name__)


class SegmentationTrain(BundleTrainTask):
    """``BundleTrainTask`` for a sonomuscle segmentation bundle (see the module's docstring)."""

    def __init__(self, path: str | Path, conf: dict[str, str], runs_dir: Path) -> None:
        super().__init__(str(path), conf, load_strict=True)
        self.runs_dir = Path(runs_dir)
        self.dimension = bundle_dims(Path(path))

    def _fetch_datalist(self, request, datastore) -> list[dict]:
        entries = super()._fetch_datalist(request, datastore)
        kept = [e for e in entries if image_dims(e["image"]) == self.dimension]
        logger.info(
            f"{len(kept)} of {len(entries)} labelled image(s) are {self.dimension}D: training on them"
        )
        return kept

    def _update_overrides(self, overrides: dict) -> dict:
        max_epochs = int(overrides[self.const.key_train_trainer_max_epochs()])
        overrides["max_epochs"] = max_epochs
        overrides["val_interval"] = min(max_epochs, int(self.bundle_config.get("val_interval", 1)))
        overrides["output_dir"] = str(self.runs_dir)
        overrides["model_path"] = str(Path(self.bundle_path) / "models" / "model.pt")
        overrides["resume"] = False
        if not torch.cuda.is_available():
            overrides[self.const.key_device()] = torch.device("cpu")
        logger.info(f"training {Path(self.bundle_path).name} for {max_epochs} epoch(s) → {self.runs_dir}")
        return overrides
