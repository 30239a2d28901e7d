"""The image-level pieces the classification and regression bundles are built from: encoder transfer,
the outputs' record in the checkpoint, target scaling, class weights, the ROI crop and predictions.csv."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor
from monai.networks.nets import UNet

from sonomuscle.errors import InputError
from sonomuscle.handlers.predictions import ImagePredictions
from sonomuscle.networks import ImageLevelNet, load_unet_encoder, unet_encoder_prefixes
from sonomuscle.targets import OutputNames, checkpoint_outputs, class_weights, datalist_outputs
from sonomuscle.transforms.crop import CropUltrasoundd
from sonomuscle.transforms.targets import StandardizeTargetsd

REPO = Path(__file__).resolve().parents[1]
CHANNELS = [8, 16, 32, 64]


def _unet(channels=CHANNELS) -> UNet:
    return UNet(2, 1, 2, channels, [2] * (len(channels) - 1), num_res_units=2, norm="batch")


def _net(channels=CHANNELS, outputs: int = 3) -> ImageLevelNet:
    return ImageLevelNet(2, 1, outputs, channels, [2] * (len(channels) - 1) + [1])


def test_the_encoder_of_a_segmentation_unet_loads_layer_for_layer(tmp_path):
    unet = _unet()
    torch.save({"model": unet.state_dict()}, tmp_path / "model.pt")
    net = _net()
    copied = load_unet_encoder(net, tmp_path / "model.pt")
    source, target = unet.state_dict(), net.state_dict()
    prefixes = unet_encoder_prefixes(len(CHANNELS))
    assert copied == sum(k.startswith(p) for k in source for p in prefixes) > 0
    for level, prefix in enumerate(prefixes):
        layer = {k[len(prefix) :]: v for k, v in source.items() if k.startswith(prefix)}
        assert layer, prefix
        for key, value in layer.items():
            torch.testing.assert_close(target[f"net.layer_{level}.{key}"], value)
    # the encoders compute the same features: the U-Net's bottom output equals the network's last layer
    unet.eval(), net.eval()
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        features = x
        for level in range(len(CHANNELS) - 1):
            features = unet.get_submodule("model" + ".1.submodule" * level + ".0")(features)
        bottom = unet.get_submodule("model" + ".1.submodule" * (len(CHANNELS) - 1))(features)
        torch.testing.assert_close(net.net(x), bottom)


def test_the_shipped_architecture_model_initialises_a_network_of_its_channels():
    shipped = REPO / "bundles" / "muscle_architecture_2d" / "models" / "model.pt"
    assert load_unet_encoder(_net([16, 32, 64, 128, 256]), shipped) > 0


@pytest.mark.parametrize("off", [None, False, "false", "None", ""])
def test_an_encoder_switched_off_leaves_the_random_weights(off):
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert load_unet_encoder(net, off) == 0
    for key, value in net.state_dict().items():
        torch.testing.assert_close(value, before[key])


def test_an_encoder_of_other_channels_is_refused_in_one_line(tmp_path):
    torch.save({"model": _unet([8, 16, 32, 64, 128]).state_dict()}, tmp_path / "model.pt")
    with pytest.raises(InputError, match=r"does not match this network at level 3") as err:
        load_unet_encoder(_net(), tmp_path / "model.pt")
    assert "\n" not in str(err.value)


def test_the_network_takes_any_input_size_and_gives_one_value_per_output():
    net = _net(outputs=4).eval()
    for size in (32, 48, 96):
        assert net(torch.rand(3, 1, size, size)).shape == (3, 4)


def _datalist(tmp_path, content: dict) -> Path:
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps(content))
    return path


def test_regression_outputs_carry_the_training_mean_and_sd_through_the_checkpoint(tmp_path):
    labels = [[10.0, 0.2], [30.0, 0.4], [50.0, 0.9]]
    datalist = _datalist(
        tmp_path,
        {"targets": ["angle", "activation"], "training": [{"image": "x", "label": v} for v in labels]},
    )
    outputs = datalist_outputs(datalist)
    expected = torch.tensor(labels, dtype=torch.float64)
    torch.testing.assert_close(outputs.mean, expected.mean(0))
    torch.testing.assert_close(outputs.sd, expected.std(0))
    torch.save({"model": {}, "outputs": outputs.state_dict()}, tmp_path / "model.pt")
    restored = checkpoint_outputs(tmp_path / "model.pt")
    assert restored.names == ["angle", "activation"] and restored.regression
    torch.testing.assert_close(restored.mean, outputs.mean)

    scaled = StandardizeTargetsd("label", restored)({"label": labels[1]})["label"]
    torch.testing.assert_close(scaled, ((expected[1] - expected.mean(0)) / expected.std(0)).float())
    back = StandardizeTargetsd("label", restored, inverse=True)({"label": scaled})["label"]
    torch.testing.assert_close(back, torch.tensor(labels[1]))


def test_a_checkpoint_of_other_outputs_is_refused_by_name():
    trained = OutputNames(["a", "b"])
    with pytest.raises(InputError, match=r"trained on classes \['a', 'b'\], this run has \['a', 'c'\]"):
        OutputNames(["a", "c"]).load_state_dict(trained.state_dict())


def test_class_weights_are_inverse_to_training_frequency_and_a_class_without_images_is_named(tmp_path):
    training = [{"image": "x", "label": i} for i in [0] * 6 + [1] * 3 + [2]]
    datalist = _datalist(tmp_path, {"class_names": ["a", "b", "c"], "training": training})
    weights = class_weights(datalist)
    torch.testing.assert_close(weights / weights[0], torch.tensor([1.0, 2.0, 6.0]))
    assert weights.mean().item() == pytest.approx(1.0)
    datalist = _datalist(tmp_path, {"class_names": ["a", "b", "c"], "training": training[:9]})
    with pytest.raises(InputError, match="no training image of class c"):
        class_weights(datalist)


def test_the_crop_takes_an_roi_mask_before_a_box_before_the_picture():
    image = MetaTensor(torch.rand(1, 60, 40))
    roi = torch.zeros(1, 60, 40)
    roi[0, 10:20, 5:15] = 1
    crop = CropUltrasoundd("image", "image", roi_margin=2)
    out = crop({"image": image, "roi": MetaTensor(roi), "crop": [0, 0, 30, 30]})
    assert out["image"].shape == (1, 14, 14) and "roi" not in out
    torch.testing.assert_close(out["image"].as_tensor(), image.as_tensor()[:, 8:22, 3:17])
    assert crop({"image": image, "crop": [1, 2, 30, 20]})["image"].shape == (1, 30, 20)
    whole = CropUltrasoundd("image", "image", whole_frame="true")({"image": image})
    assert whole["image"].shape == (1, 60, 40)
    assert not CropUltrasoundd("image", "image", whole_frame="false").whole_frame
    with pytest.raises(InputError, match="ROI mask is empty"):
        crop({"image": image, "roi": MetaTensor(torch.zeros(1, 60, 40))})


def test_predictions_csv_names_classes_and_keeps_targets_in_their_units(tmp_path):
    def run(outputs: OutputNames, preds: list[list[float]]) -> pd.DataFrame:
        handler = ImagePredictions(tmp_path, outputs)
        engine = Engine(lambda e, b: b)
        handler.attach(engine)
        batch = [
            {
                "image": MetaTensor(torch.zeros(1, 4, 4), meta={"filename_or_obj": f"/d/img{i}.png"}),
                "pred": torch.tensor(p),
            }
            for i, p in enumerate(preds)
        ]
        engine.run([batch])
        return pd.read_csv(tmp_path / "predictions.csv")

    table = run(OutputNames(["a", "b", "c"]), [[0.1, 0.7, 0.2], [0.6, 0.3, 0.1]])
    assert table["image"].tolist() == ["/d/img0.png", "/d/img1.png"]
    assert table["class"].tolist() == ["b", "a"]
    assert table["probability_c"].tolist() == pytest.approx([0.2, 0.1])
    table = run(OutputNames(["angle", "torque"], [0.0, 0.0], [1.0, 1.0]), [[35.5, 12.25]])
    assert table[["angle", "torque"]].values.tolist() == [[35.5, 12.25]]
