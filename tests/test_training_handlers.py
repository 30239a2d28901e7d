"""What a training prints and how it resumes: schedule stretched to new epochs, "not scored", units."""

from __future__ import annotations

import math
import os

import pytest
import torch
from ignite.engine import Engine, State
from monai.data import MetaTensor
from monai.networks.nets import UNet

from sonomuscle.checkpoints import last_checkpoint, load_initial_weights
from sonomuscle.errors import InputError
from sonomuscle.handlers.progress import metric_texts
from sonomuscle.handlers.resume import stretch_cosine_schedule
from sonomuscle.handlers.trained_channels import TrainedChannels
from sonomuscle.transforms.io import units_of


def _cosine(epochs_done: int, t_max: int) -> torch.optim.lr_scheduler.CosineAnnealingLR:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=t_max)
    for _ in range(epochs_done):
        optimizer.step()
        scheduler.step()
    return scheduler


def test_a_finished_short_schedule_stretched_to_more_epochs_continues_where_the_long_one_stands():
    short = _cosine(epochs_done=3, t_max=3)
    assert short.get_last_lr()[0] == pytest.approx(0.0, abs=1e-12)  # what MONAI's loader restores
    stretch_cosine_schedule(short, 50)
    rates = []
    for _ in range(47):
        short.optimizer.step()
        short.step()
        rates.append(short.get_last_lr()[0])
    expected = [(1 + math.cos(math.pi * epoch / 50)) / 2 for epoch in range(4, 51)]
    assert rates == pytest.approx(expected, abs=1e-9)
    assert max(rates) > 0.9  # not a cycle every 6 epochs from zero


def test_resume_takes_the_newest_readable_checkpoint(tmp_path, caplog):
    for epoch in (1, 2):
        torch.save({"epoch": torch.tensor(epoch)}, tmp_path / f"checkpoint_epoch={epoch}.pt")
        os.utime(tmp_path / f"checkpoint_epoch={epoch}.pt", (epoch * 100, epoch * 100))
    assert last_checkpoint(tmp_path).endswith("checkpoint_epoch=2.pt")
    assert last_checkpoint(tmp_path, resume=False) == ""
    assert last_checkpoint(tmp_path / "none") == ""
    (tmp_path / "checkpoint_epoch=3.pt").write_bytes(b"cut short by a crash")  # the newest
    assert last_checkpoint(tmp_path).endswith("checkpoint_epoch=2.pt")
    assert "checkpoint_epoch=3.pt: not a readable PyTorch checkpoint" in caplog.text


def test_epoch_line_says_not_scored_and_units():
    validator = Engine(lambda engine, batch: None)
    validator.state = State()
    validator.state.metrics = {"val_dice_aponeurosis": 0.8123, "val_dice_fascicle": 0.0, "val_hd95": 3.25}
    validator.state.metric_details = {
        "val_dice_aponeurosis": torch.tensor([[0.8], [0.82]]),
        "val_dice_fascicle": torch.tensor([[math.nan], [math.nan]]),
    }
    validator.state.metric_units = {"val_hd95": "px"}
    assert metric_texts(validator) == [
        "dice_aponeurosis 0.8123",
        "dice_fascicle not scored (no case annotated)",
        "hd95 3.25 px",
    ]


def test_distances_of_uncalibrated_images_are_pixels():
    # the meta SetSpacingd and the reader leave; a plain tensor has no spacing: its distances are in voxels
    calibrated = MetaTensor(torch.zeros(1, 4, 4), meta={"calibration": "spacing", "spacing_known": True})
    bare = MetaTensor(torch.zeros(1, 4, 4), meta={"calibration": "none", "spacing_known": False})
    assert (units_of(calibrated), units_of(bare), units_of(torch.zeros(1, 4, 4))) == ("mm", "px", "px")


@pytest.mark.parametrize("off", [False, "false", "False", "no", "0", None])
def test_resume_switched_off_as_the_command_line_writes_it_starts_afresh(tmp_path, off):
    """``--resume false`` reaches the config as the text "false", which must not count as on."""
    torch.save({"model": {}}, tmp_path / "checkpoint_epoch=1.pt")
    assert last_checkpoint(tmp_path, resume=off) == ""
    assert last_checkpoint(tmp_path, resume="true").endswith("checkpoint_epoch=1.pt")


def _unet(dims: int = 2) -> UNet:
    return UNet(spatial_dims=dims, in_channels=1, out_channels=2, channels=(4, 8), strides=(2,))


def test_fine_tuning_starts_from_the_weights_and_the_channels_they_were_trained_on(tmp_path):
    trained, record = _unet(), TrainedChannels(["aponeurosis", "fascicle"])
    record.trained[:] = True
    torch.save({"model": trained.state_dict(), "trained_channels": record.state_dict()}, tmp_path / "m.pt")
    network, fresh = _unet(), TrainedChannels(["aponeurosis", "fascicle"])
    assert load_initial_weights(tmp_path / "m.pt", network, fresh) == str(tmp_path / "m.pt")
    loaded, saved = network.state_dict(), trained.state_dict()
    assert all(torch.equal(loaded[k], saved[k]) for k in saved)
    assert fresh.untrained() == []  # fascicle-free fine-tuning images do not make that channel "untrained"


@pytest.mark.parametrize("off", [False, "false", ""])
def test_no_initial_weights_leaves_the_network_as_it_was(off):
    network = _unet()
    before = {k: v.clone() for k, v in network.state_dict().items()}
    assert load_initial_weights(off, network) == ""
    assert all(torch.equal(before[k], v) for k, v in network.state_dict().items())


def test_initial_weights_of_another_network_are_one_line(tmp_path):
    torch.save({"model": _unet(dims=3).state_dict()}, tmp_path / "3d.pt")
    with pytest.raises(InputError, match=r"3d\.pt.*another network than this bundle's") as err:
        load_initial_weights(tmp_path / "3d.pt", _unet())
    assert "\n" not in str(err.value)
