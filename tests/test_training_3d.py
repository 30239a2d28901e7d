"""Real trainings of the 3D bundles on CPU: held-out Dice ≥ 0.80, bladder wall thickness, inference speed.

Each training runs the bundle's own train.json in-process on small phantoms, then its inference.json on the
test split; the printed figures (pytest -s) are the ones the issue note reports.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from monai.bundle import ConfigWorkflow

from sonomuscle.data.phantoms import bladder, ciliary
from sonomuscle.measures.thickness import thickness_summary
from sonomuscle.metrics.segmentation import segmentation_metrics

REPO = Path(__file__).resolve().parents[1]
# (phantom module, number of phantoms, train.json overrides): sized for a few minutes on 2 CPU cores
TRAININGS = {
    "ciliary_muscle_3d": (ciliary, 12, {"max_epochs": 40, "spatial_size": [48, 48, 32]}),
    "bladder_wall_3d": (bladder, 12, {"max_epochs": 40, "spatial_size": [48, 48, 48]}),
}
SMALL_NET = {"channels": [8, 16, 32, 64]}
TARGET_LABEL = {"ciliary_muscle_3d": "ciliary_muscle", "bladder_wall_3d": "wall"}


def _workflow(bundle: str, config: str, kind: str, **overrides) -> ConfigWorkflow:
    root = REPO / "bundles" / bundle
    workflow = ConfigWorkflow(
        config_file=str(root / "configs" / config),
        meta_file=str(root / "configs" / "metadata.json"),
        logging_file=False,
        workflow_type=kind,
        bundle_root=str(root),
        **overrides,
    )
    workflow.initialize()
    return workflow


def _run(workflow: ConfigWorkflow) -> None:
    workflow.run()
    workflow.finalize()


@pytest.mark.slow
@pytest.mark.parametrize("bundle", sorted(TRAININGS))
def test_training_reaches_held_out_dice(bundle, tmp_path):
    phantoms, n, settings = TRAININGS[bundle]
    data, out = tmp_path / "data", tmp_path / "out"
    phantoms.write_dataset(data, n, seed=1)
    common = {
        "datalist": str(data / "datalist.json"),
        "output_dir": str(out),
        "model_path": str(out / "model.pt"),
        "spatial_size": settings["spatial_size"],
        **SMALL_NET,
    }
    start = time.perf_counter()
    _run(
        _workflow(bundle, "train.json", "train", max_epochs=settings["max_epochs"], val_interval=5, **common)
    )
    train_s = time.perf_counter() - start

    infer = _workflow(bundle, "inference.json", "infer", **common)
    _run(infer)
    labels = infer.parser["labels"]
    target = TARGET_LABEL[bundle]
    truth = pd.read_csv(data / "truth.csv").set_index("case")
    measured = pd.read_csv(out / "measurements.csv").set_index("case")
    dice, thickness = {}, []
    for entry in json.loads((data / "datalist.json").read_text())["test"]:
        case = Path(entry["image"]).name.removesuffix(".nii.gz")
        ref = nib.load(data / entry["label"])
        pred = np.asarray(nib.load(out / "pred" / f"{case}.nii.gz").dataobj)
        spacing = tuple(float(s) for s in ref.header.get_zooms())
        scores = segmentation_metrics(pred, np.asarray(ref.dataobj), spacing, labels)
        dice[case] = scores[target]["dice"]
        if bundle == "bladder_wall_3d":
            on_reference = thickness_summary(np.asarray(ref.dataobj) == labels[target], spacing)["mean"]
            thickness.append(
                (
                    measured.loc[case, "wall_thickness_mean_mm"],
                    truth.loc[case, "wall_thickness_mean_mm"],
                    on_reference,
                )
            )

    speed = _sliding_window_mvoxel_per_s(
        infer, data / json.loads((data / "datalist.json").read_text())["test"][0]["image"]
    )
    report = {"bundle": bundle, "train_s": round(train_s, 1), "dice": dice, "mvoxel_per_s": round(speed, 2)}
    if thickness:
        pred_mm, true_mm, ref_mm = np.array(thickness).T
        report["thickness_rmse_mm"] = float(np.sqrt(np.mean((pred_mm - true_mm) ** 2)))
        report["thickness_rmse_vs_reference_mask_mm"] = float(np.sqrt(np.mean((pred_mm - ref_mm) ** 2)))
    print(json.dumps(report))
    assert np.mean(list(dice.values())) >= 0.80, report
    if thickness:
        assert report["thickness_rmse_mm"] <= 0.70, report  # Akkus et al. 2020: 0.70 ± 0.20 mm


def _sliding_window_mvoxel_per_s(infer: ConfigWorkflow, image_path: Path) -> float:
    """Million input voxels per second through the bundle's sliding-window inferer and network."""
    network = infer.parser.get_parsed_content("network").eval()
    inferer = infer.parser.get_parsed_content("inferer")
    image = infer.parser.get_parsed_content("preprocessing")({"image": str(image_path)})["image"][None]
    with torch.no_grad():
        inferer(image, network)  # warm-up
        start = time.perf_counter()
        inferer(image, network)
    return image[0, 0].numel() / (time.perf_counter() - start) / 1e6
