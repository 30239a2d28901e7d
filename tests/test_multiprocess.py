"""Every bundle trains under ``torchrun`` (two CPU processes, gloo) and validates whenever its trainer ends.

One rank writes checkpoints and the best model, every rank validates its share of the cases (the metrics'
all_gather needs them all), and a trainer shortened below ``val_interval`` still validates and saves.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from ignite.engine import Engine
from monai.bundle import ConfigParser
from monai.handlers import CheckpointLoader, CheckpointSaver, MetricsSaver, StatsHandler

from bundle_runs import bundle_run, torchrun
from sonomuscle.bundle import handlers_for_rank
from sonomuscle.data.phantoms import write_phantom_dataset
from sonomuscle.handlers.learning_curve import LearningCurve
from sonomuscle.handlers.validation import LastEpochValidationHandler
from sonomuscle.workflows import bundle_command

REPO = Path(__file__).resolve().parents[1]
PHANTOM_TASK = {
    "muscle_architecture_2d": "architecture2d",
    "ciliary_muscle_3d": "ciliary3d",
    "bladder_wall_3d": "bladder3d",
}
# seconds per epoch on a CPU core
TINY_3D = {"spatial_size": [32, 32, 16], "channels": [4, 8, 16, 32], "sw_batch_size": 2, "num_samples": 1}
TINY = {
    "muscle_architecture_2d": {"spatial_size": [64, 64], "channels": [4, 8, 16, 32]},
    "ciliary_muscle_3d": TINY_3D,
    "bladder_wall_3d": TINY_3D,
}
EPOCHS = 2


def test_rank_zero_keeps_every_handler_the_others_only_collective_and_state_ones(tmp_path):
    weights = {"model": torch.nn.Linear(1, 1)}
    loader, saver = CheckpointLoader(tmp_path / "resume.pt", weights), CheckpointSaver(tmp_path, weights)
    validation, metrics = LastEpochValidationHandler(interval=1), MetricsSaver(tmp_path)
    stats, curve = StatsHandler(), LearningCurve(tmp_path)
    handlers = [loader, saver, validation, stats, curve, metrics]

    assert handlers_for_rank(handlers, rank=0) == handlers
    assert handlers_for_rank(handlers, rank=1) == [loader, validation, metrics]
    assert handlers_for_rank(None, rank=1) == []
    assert handlers_for_rank(handlers) == handlers  # no process group: a lone process is rank 0


class _Validator:
    def __init__(self) -> None:
        self.epochs: list[int] = []

    def run(self, epoch: int) -> None:
        self.epochs.append(epoch)


@pytest.mark.parametrize(("max_epochs", "expected"), [(3, [3]), (7, [5, 7]), (10, [5, 10])])
def test_validation_every_interval_and_once_at_the_last_epoch(max_epochs, expected):
    handler, validator = LastEpochValidationHandler(interval=5), _Validator()
    handler.validator = validator  # a stand-in: the constructor accepts only MONAI evaluators
    trainer = Engine(lambda engine, batch: None)
    handler.attach(trainer)
    trainer.run([0], max_epochs=max_epochs)
    assert validator.epochs == expected


@pytest.mark.parametrize("bundle", sorted(PHANTOM_TASK))
def test_lr_schedule_follows_the_trainers_epochs(bundle):
    parser = ConfigParser()
    parser.read_config(REPO / "bundles" / bundle / "configs" / "train.json")
    parser["train#trainer#max_epochs"] = 3  # as MONAI Label overrides it
    assert parser.get_parsed_content("lr_scheduler").T_max == 3


def test_a_trainer_shorter_than_val_interval_still_saves_the_best_model(tmp_path):
    datalist = write_phantom_dataset("architecture2d", tmp_path / "phantoms", 4, seed=0)
    out = tmp_path / "out"
    bundle_run(
        "muscle_architecture_2d",
        ["train"],
        datalist=datalist,
        output_dir=out,
        model_path=out / "model.pt",
        val_interval=5,
        **{"train#trainer#max_epochs": EPOCHS},
        **TINY["muscle_architecture_2d"],
    )
    assert isinstance(torch.load(out / "model.pt", weights_only=True), dict)
    curve = pd.read_csv(out / "learning_curve.csv")
    assert list(curve["epoch"]) == [1, 2] and curve["val_mean_dice"].notna().tolist() == [False, True]


@pytest.fixture(params=sorted(PHANTOM_TASK))
def bundle(request) -> str:
    return request.param


@pytest.fixture
def datalist(bundle, tmp_path) -> Path:
    """Ten phantoms: six to train on, two to validate (one per rank), two to test."""
    path = write_phantom_dataset(PHANTOM_TASK[bundle], tmp_path / "phantoms", 10, seed=0)
    assert len(json.loads(path.read_text())["validation"]) == 2
    return path


def _torchrun(bundle: str, logs: Path, **overrides: object) -> tuple[int, dict[int, str]]:
    """Train ``bundle`` in two processes; the exit code and each rank's log (rank 0's ends with the launcher's)."""
    command = bundle_command(bundle, ["train", "multi_gpu_train"], **overrides)
    # the engines' own lines ("Saved checkpoint at epoch: N") show which rank writes: log them here
    conf = command[command.index("--logging_file") + 1]
    engine_logging = logs.parent / "logging_with_engines.conf"
    engine_logging.write_text(
        Path(conf).read_text().replace("[logger_ignite]\nlevel=WARNING", "[logger_ignite]\nlevel=INFO")
    )
    command[command.index("--logging_file") + 1] = str(engine_logging)
    code, launcher_log = torchrun(command, logs)
    ranks = {
        rank: "".join(f.read_text() for f in sorted(logs.glob(f"*/attempt_*/{rank}/*.log")))
        for rank in (0, 1)
    }
    ranks[0] += launcher_log
    return code, ranks


@pytest.mark.slow
def test_two_processes_train_validate_and_one_writes(bundle, datalist, tmp_path):
    out = tmp_path / "out"
    code, logs = _torchrun(
        bundle,
        tmp_path / "logs",
        datalist=datalist,
        output_dir=out,
        model_path=out / "model.pt",
        max_epochs=EPOCHS,
        val_interval=1,
        **TINY[bundle],
    )
    assert code == 0, logs[0][-3000:] + logs[1][-3000:]

    saves = [f"Saved checkpoint at epoch: {epoch}" for epoch in range(1, EPOCHS + 1)]
    assert [logs[0].count(line) for line in saves] == [1] * EPOCHS
    assert "Saved checkpoint" not in logs[1]
    assert [p.name for p in (out / "checkpoints").iterdir()] == [f"checkpoint_epoch={EPOCHS}.pt"]
    # the per-case details hold both validation cases: each rank validated one, rank 0 gathered them
    details = sorted(out.glob("val_*_raw.csv"))
    assert details and all(len(pd.read_csv(f)) == 2 for f in details)
    assert isinstance(torch.load(out / "model.pt", weights_only=True), dict)
