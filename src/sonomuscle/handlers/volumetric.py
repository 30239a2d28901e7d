"""Ignite handlers for volumetric bundles: surface distances in mm, and per-case volume/thickness measurements.

MONAI's ``HausdorffDistance`` / ``SurfaceDistance`` handlers call their metric without a spacing, so they
report voxels. ``PhysicalDistance`` passes each case's spacing, read from its MetaTensor affine.
``VolumeMeasurements`` turns each predicted label map into the numbers a study reports (volume per class,
wall thickness) and saves the thickness map beside the mask, with the same affine.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import nibabel as nib
import numpy as np
from ignite.engine import Engine
from monai.data import MetaTensor
from monai.handlers import IgniteMetricHandler, from_engine
from monai.metrics import CumulativeIterationMetric

from sonomuscle.classes import write_classes_file
from sonomuscle.data.readers import stem_of
from sonomuscle.handlers.results import ResultsHandler
from sonomuscle.io import atomic_write_with
from sonomuscle.measures.area import volume
from sonomuscle.measures.thickness import local_thickness
from sonomuscle.transforms.io import spacing_of, units_of

logger = logging.getLogger(__name__)


_PRED_AND_LABEL = from_engine(["pred", "label"])


class PhysicalDistance(IgniteMetricHandler):
    """A surface-distance metric (``HausdorffDistanceMetric``, ``SurfaceDistanceMetric``) in mm, per case."""

    def __init__(
        self,
        metric_fn: CumulativeIterationMetric,
        output_transform: Callable = _PRED_AND_LABEL,
        save_details: bool = True,
    ) -> None:
        super().__init__(metric_fn=metric_fn, output_transform=output_transform, save_details=save_details)

    def reset(self) -> None:
        super().reset()
        self.units: set[str] = set()

    def update(self, output) -> None:
        y_pred, y = output
        # one call per case: cases in a batch may differ in spacing
        for pred, label in zip(y_pred, y, strict=True):
            self.metric_fn(pred[None], label[None], spacing=spacing_of(label))
            self.units.add(units_of(label))

    def completed(self, engine: Engine, name: str) -> None:
        """Also record the unit in ``engine.state.metric_units``: images without calibration are in pixels."""
        super().completed(engine, name)
        unit = self.units.pop() if len(self.units) == 1 else "mm or px (mixed calibration)"
        engine.state.metric_units = {**getattr(engine.state, "metric_units", {}), name: unit}


class VolumeMeasurements(ResultsHandler):
    """After each iteration, append one row per case to ``output_dir/filename``; optionally save thickness maps.

    ``labels`` maps class names to label values in the predicted map (channel-first, one channel, integer).
    For ``thickness_label`` the local thickness (mm) is summarised and its map written to
    ``output_dir/thickness/<case>.nii.gz`` with the prediction's affine. With ``label_map_dir`` (where the
    label maps are saved) the class names go there as ``classes.json``, so ``sonomuscle evaluate`` names
    the structures as the bundle does.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        labels: Mapping[str, int],
        thickness_label: str | None = None,
        filename: str = "measurements.csv",
        pred_key: str = "pred",
        label_map_dir: str | os.PathLike | None = None,
    ) -> None:
        super().__init__(output_dir, filename)
        self.output_dir = Path(output_dir)
        self.labels = dict(labels)
        self.thickness_label = thickness_label
        self.pred_key = pred_key
        self.label_map_dir = None if label_map_dir is None else Path(label_map_dir)

    def started(self, engine) -> None:
        super().started(engine)
        if self.label_map_dir is not None:
            write_classes_file(self.label_map_dir, self.labels)

    def report(self) -> None:
        where = f"; label maps in {self.label_map_dir}" if self.label_map_dir is not None else ""
        logger.info(f"{self.table.count} case(s) measured → {self.path}{where}")

    def rows(self, engine) -> list[dict]:
        return [self.measure(pred) for pred in from_engine([self.pred_key])(engine.state.output)]

    def measure(self, pred: MetaTensor) -> dict:
        """Measurements of one channel-first predicted label map."""
        name = _case_name(pred)
        label_map = np.asarray(pred.detach().cpu()[0]).round().astype(np.int16)
        spacing = spacing_of(pred)
        row: dict = {"case": name}
        for label, value in self.labels.items():
            row[f"{label}_volume_mm3"] = volume(label_map == value, spacing)
        if self.thickness_label is not None:
            # one local-thickness map serves both the summary and the saved map (NaN outside the wall)
            thickness = local_thickness(label_map == self.labels[self.thickness_label], spacing)
            inside = thickness[np.isfinite(thickness)]
            for stat, fn in (("mean", np.mean), ("median", np.median)):
                row[f"{self.thickness_label}_thickness_{stat}_mm"] = (
                    float(fn(inside)) if inside.size else math.nan
                )
            thickness = np.nan_to_num(thickness, nan=0.0).astype(np.float32)
            affine = np.asarray(pred.affine, dtype=float)
            atomic_write_with(
                self.output_dir / "thickness" / f"{name}.nii.gz",
                lambda p: nib.save(nib.Nifti1Image(thickness, affine), p),
            )
        return row


def _case_name(tensor: MetaTensor) -> str:
    """The input file's name without its extensions (``case_000.nii.gz`` → ``case_000``)."""
    source = tensor.meta.get("filename_or_obj", "case") if isinstance(tensor, MetaTensor) else "case"
    return stem_of(str(source))
