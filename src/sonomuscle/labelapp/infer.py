"""MONAI Label inference with a sonomuscle segmentation bundle: its own transforms, network and measures.

``BundleInferTask`` runs the bundle's ``preprocessing``, ``inferer`` and ``postprocessing`` but not its
``handlers``; this task adds what a viewer and a user need on top:

- the files the bundle would write (label maps, overlays) are not written: MONAI Label writes the result;
- the bundle's own measure handlers (thickness, pennation angle, fascicle length, areas, volumes, wall
  thickness) measure the prediction, and their rows come back in the result's ``measurements``;
- a multi-label 2D prediction (one channel per structure) becomes one label map with the bundle's
  ``label_values`` (0 background, 1 aponeurosis, 2 fascicle), which Slicer shows as one segmentation;
- what the bundle's model loader restores beside the weights (the channels a model was trained on, its
  classes) is read from the served model, again after each retraining: the measures depend on it;
- MONAI Label puts the request's ``image_path`` beside the image, which MONAI's ``Spacingd`` mistakes for
  the image's meta data ("'str' object has no attribute 'update'"); it is set aside before the bundle's
  transforms and put back for the writer.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.transforms import Activationsd, SaveImaged, SqueezeDimd, Transform
from monai.utils import optional_import
from monailabel.tasks.infer.bundle import BundleInferTask

from sonomuscle.checkpoints import read_checkpoint
from sonomuscle.labelapp.bundles import viewer_labels
from sonomuscle.transforms.labels import LabelMapd

logger = logging.getLogger(__name__)
ASIDE = "_sonomuscle_image_path"
WRITERS = [SaveImaged]  # the bundle's file writers


class SetAside(Transform):
    """Move ``key`` to ``to`` (``to`` back to ``key`` with ``restore``)."""

    def __init__(self, key: str, to: str, restore: bool = False) -> None:
        self.source, self.target = (to, key) if restore else (key, to)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.source in d:
            d[self.target] = d.pop(self.source)
        return d


class Measure(Transform):
    """Measure ``pred`` with each handler's ``measure`` and put the rows in ``result["measurements"]``."""

    def __init__(self, handlers: Sequence[Any], pred_key: str = "pred", result_key: str = "result") -> None:
        self.handlers = list(handlers)
        self.pred_key = pred_key
        self.result_key = result_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        rows: list[dict] = []
        for handler in self.handlers:
            measured = handler.measure(d[self.pred_key])
            rows += measured if isinstance(measured, list) else [measured]
        d[self.result_key] = {**d.get(self.result_key, {}), "measurements": [_json_row(r) for r in rows]}
        return d


def _json_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """NaN is not JSON and paths are not JSON types: null and text instead."""
    out = {}
    for key, value in row.items():
        if isinstance(value, float) and math.isnan(value):
            value = None
        elif isinstance(value, Path):
            value = str(value)
        elif hasattr(value, "item"):
            value = value.item()
        out[key] = value
    return out


def measure_handlers(config, scratch: Path) -> list[Any]:
    """The bundle's handlers that measure a prediction, built with their files going to ``scratch``."""
    config["output_dir"] = str(scratch)
    if config.get("save_overlay") is not None:
        config["save_overlay"] = False  # the viewer draws the result itself
    if config.get("mask_writers") is not None:
        config["mask_writers"] = None  # and keeps the label it returns
    handlers = []
    for index, item in enumerate(config.get("handlers", [])):
        target = item.get("_target_", "") if isinstance(item, dict) else ""
        module, _, name = target.rpartition(".")
        cls, found = optional_import(module, name=name) if module else (None, False)
        if found and hasattr(cls, "measure"):
            handlers.append(config.get_parsed_content(f"handlers#{index}"))
    return handlers


def checkpoint_records(config) -> dict[str, Any]:
    """The objects besides the network that the bundle's model loader fills from a checkpoint."""
    for index, item in enumerate(config.get("handlers", [])):
        if isinstance(item, dict) and item.get("_target_", "").endswith("ModelLoader"):
            load_dict = config.get_parsed_content(f"handlers#{index}#load_dict")
            return {key: record for key, record in load_dict.items() if key != "model"}
    return {}


class SegmentationInfer(BundleInferTask):
    """``BundleInferTask`` for a sonomuscle segmentation bundle (see the module's docstring)."""

    def __init__(self, path: str | Path, conf: dict[str, str], scratch: Path) -> None:
        super().__init__(str(path), conf, post_filter=WRITERS, load_strict=True)
        if not self.valid:
            return
        self.labels = viewer_labels(self.bundle_config)
        self.multi_label = self.bundle_config.get("label_values") is not None
        self.handlers = measure_handlers(self.bundle_config, scratch)
        self.records = checkpoint_records(self.bundle_config)
        self.records_mtime: float | None = None

    def refresh_records(self) -> None:
        """Load the records from the served model when it changed since they were last loaded."""
        path = self.get_path()
        mtime = os.stat(path).st_mtime
        if mtime == self.records_mtime:
            return
        checkpoint = read_checkpoint(path)
        for key, record in self.records.items():
            if key in checkpoint:
                record.load_state_dict(checkpoint[key])
        self.records_mtime = mtime

    def pre_transforms(self, data=None) -> Sequence[Callable]:
        return [SetAside("image_path", ASIDE), *super().pre_transforms(data)]

    def post_transforms(self, data=None) -> Sequence[Callable]:
        self.refresh_records()
        post = list(super().post_transforms(data))
        restore = post.pop()  # MONAI Label's Restored, last: it needs the label map
        extra = [Measure(self.handlers)]
        if self.multi_label:
            extra.append(LabelMapd("pred", list(self.labels.values())))
        # Restored drops the channel of 3D maps only; a 2D map keeps (1, X, Y), which would be written as 3D
        flat = [SqueezeDimd("pred", dim=0)] if self.dimension == 2 else []
        return [*post, *extra, restore, *flat, SetAside("image_path", ASIDE, restore=True)]

    def predict_probabilities(self, data: dict, device: str) -> Callable[[torch.Tensor], torch.Tensor]:
        """Batched pre-processed images → the bundle's probabilities (its inferer, network and activation)."""
        network = self._get_network(device, data)
        inferer = self.inferer(data)
        activation = next(t for t in super().post_transforms(data) if isinstance(t, Activationsd))

        def predict(batch: torch.Tensor) -> torch.Tensor:
            outputs = inferer(batch.to(device), network)
            # MONAI's activations take one channel-first case: a softmax over a batch would mix its cases
            return torch.stack([activation({"pred": case})["pred"].cpu() for case in outputs])

        return predict
