"""The MONAI Label app: every sonomuscle segmentation bundle for inference, training and active learning.

Configuration (``--conf KEY VALUE`` of ``monailabel start_server``, set by ``sonomuscle label-server``):

- ``models``: comma list of bundles to serve, or ``all`` (default): every segmentation bundle;
- ``max_images``: images scored per active-learning request (default 16).

Bundles are served from writable copies under ``<studies>/.sonomuscle/models`` and trained into them.
Strategies: ``random``, ``first`` (MONAI Label's) and ``uncertainty_<bundle>`` (``MirrorUncertainty``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask
from monailabel.tasks.activelearning.first import First
from monailabel.tasks.activelearning.random import Random

import sonomuscle
from sonomuscle.labelapp.bundles import MODELS_SUBDIR, chosen_bundles, working_copies
from sonomuscle.labelapp.infer import SegmentationInfer
from sonomuscle.labelapp.strategy import MirrorUncertainty
from sonomuscle.labelapp.train import SegmentationTrain

logger = logging.getLogger(__name__)


class SonomuscleApp(MONAILabelApp):
    """MONAI Label app serving sonomuscle's segmentation bundles (see the module's docstring)."""

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        self.work_dir = Path(studies) / MODELS_SUBDIR.parent
        self.bundles = working_copies(studies, chosen_bundles(conf.get("models", "all")))
        self.max_images = int(conf.get("max_images", 16))
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="sonomuscle",
            description="Muscle ultrasound segmentation bundles: aponeuroses and fascicles, CSA, 3D",
            version=sonomuscle.__version__,
        )

    def init_infers(self) -> dict[str, InferTask]:
        infers = {}
        for name, path in self.bundles.items():
            task = SegmentationInfer(path, self.conf, scratch=self.work_dir / "measures" / name)
            if task.is_valid():
                infers[name] = task
            else:
                logger.warning(f"not serving {name}: MONAI Label cannot read the bundle at {path}")
        return infers

    def init_trainers(self) -> dict[str, TrainTask]:
        return {
            name: SegmentationTrain(path, self.conf, runs_dir=self.work_dir / "runs" / name)
            for name, path in self.bundles.items()
        }

    def init_strategies(self) -> dict[str, Strategy]:
        strategies: dict[str, Strategy] = {"random": Random(), "first": First()}
        for name, task in self._infers.items():
            strategies[f"uncertainty_{name}"] = MirrorUncertainty(name, task, self.max_images)
        return strategies
