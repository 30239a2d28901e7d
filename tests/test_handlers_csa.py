"""StructureMeasurements: rows per image and structure, pictures, and a bad image that does not stop the run."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch
from monai.data import MetaTensor
from PIL import Image

from sonomuscle.handlers.csa import StructureMeasurements
from sonomuscle.transforms.io import SPACING_KNOWN

CLASSES = {"rf": 1, "vl": 2}


def _prediction(source, label_map: np.ndarray, spacing: float | None) -> MetaTensor:
    affine = torch.diag(torch.tensor([spacing or 1.0, spacing or 1.0, 1.0, 1.0], dtype=torch.float64))
    meta = {"filename_or_obj": str(source), SPACING_KNOWN: spacing is not None}
    return MetaTensor(torch.as_tensor(label_map[None], dtype=torch.float32), affine=affine, meta=meta)


def test_rows_pictures_and_a_bad_image(tmp_path, caplog):
    grey = np.full((60, 40), 50, np.uint8)  # (X, Y)
    label_map = np.zeros((60, 40), np.uint8)
    label_map[10:30, 5:25] = 1
    grey[label_map == 1] = 120
    Image.fromarray(grey.T).save(tmp_path / "scan.png")
    handler = StructureMeasurements(
        tmp_path / "out",
        CLASSES,
        mask_dir=tmp_path / "out" / "masks",
        overlay_dir=tmp_path / "out",
        label_map_dir=tmp_path / "out" / "pred",
    )
    handler.started(None)
    output = [
        {"pred": _prediction(tmp_path / "scan.png", label_map, 0.2)},
        {"pred": _prediction(tmp_path / "gone.png", label_map, None)},
    ]
    handler(SimpleNamespace(state=SimpleNamespace(output=output)))
    handler.report()

    rows = pd.read_csv(tmp_path / "out" / "measurements.csv")
    rf = rows[(rows["image"].str.endswith("scan.png")) & (rows["structure"] == "rf")].iloc[0]
    assert rf["area"] == 400 * 0.04 and rf["area_cm2"] == 0.16 and rf["echo_intensity"] == 120
    assert rf["units"] == "mm" and rf["grey_range"] == "0-255" and rf["value"] == 1
    vl = rows[rows["structure"] == "vl"].iloc[0]
    assert vl["area"] == 0 and math.isnan(vl["echo_intensity"])
    bad = rows[rows["image"].str.endswith("gone.png")].iloc[0]
    assert "gone.png" in bad["error"] and math.isnan(bad["area"])
    assert np.array_equal(
        np.asarray(Image.open(tmp_path / "out" / "masks" / "scan_rf.png")).T == 255, label_map == 1
    )
    assert (tmp_path / "out" / "scan_overlay.jpg").is_file()
    assert json.loads((tmp_path / "out" / "pred" / "classes.json").read_text()) == CLASSES
    assert "not measured" in caplog.text and "1 of 2 image(s) without calibration" in caplog.text
