"""Every bundle honours the MONAI bundle contract: properties, metadata schema, network I/O, TorchScript export.

Each config a user runs (train, multi-GPU train, inference, inference + evaluate) is instantiated on a few
phantoms and checked with ``ConfigWorkflow.check_properties``; test_multiprocess.py trains the multi-GPU
config for real under ``torchrun``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow, ckpt_export, verify_metadata, verify_net_in_out

from sonomuscle.data.phantoms import write_phantom_dataset

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "bundles" / "schema" / "meta_schema_20240725.json"
PHANTOM_TASK = {
    "muscle_architecture_2d": "architecture2d",
    "muscle_csa_2d": "csa2d",
    "muscle_classification_2d": "classify2d",
    "muscle_state_regression_2d": "regress2d",
    "ciliary_muscle_3d": "ciliary3d",
    "bladder_wall_3d": "bladder3d",
}
# enough phantoms to split into training, validation and test subjects, every class in training (default 6)
N_PHANTOMS = {"muscle_classification_2d": 40, "muscle_state_regression_2d": 11}
# (config files, workflow type) as a user combines them
WORKFLOWS = [
    (["train.json"], "train"),
    (["inference.json"], "infer"),
    (["inference.json", "evaluate.json"], "infer"),
]
MULTI_GPU = ["train.json", "multi_gpu_train.json"]
# check_properties of the multi-GPU config in a process of its own: a process group (and ignite's record of
# it) outlives destroy_process_group and would turn every later in-process training distributed
_CHECK_IN_PROCESS_GROUP = """
import json, sys
from monai.bundle import ConfigWorkflow
kwargs = json.loads(sys.argv[1])
workflow = ConfigWorkflow(**kwargs)
workflow.initialize()
missing = workflow.check_properties()
workflow.finalize()
sys.exit(f"missing properties: {missing}" if missing else 0)
"""


def _configs(bundle: str) -> Path:
    return REPO / "bundles" / bundle / "configs"


@pytest.fixture(scope="module", params=sorted(PHANTOM_TASK))
def bundle(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def datalist(bundle, tmp_path_factory) -> Path:
    """A few phantoms of the bundle's task: some to train on, at least one to validate and one to test."""
    n = N_PHANTOMS.get(bundle, 6)
    return write_phantom_dataset(PHANTOM_TASK[bundle], tmp_path_factory.mktemp(bundle), n, seed=0)


@pytest.mark.parametrize(("configs", "kind"), WORKFLOWS, ids=["+".join(c) for c, _ in WORKFLOWS])
def test_check_properties(bundle, datalist, configs, kind, tmp_path):
    workflow = ConfigWorkflow(**_workflow_arguments(bundle, configs, kind, datalist, tmp_path))
    workflow.initialize()
    assert not workflow.check_properties()
    workflow.finalize()


def test_check_properties_of_multi_gpu_training(bundle, datalist, tmp_path):
    """The environment ``torchrun`` gives a lone process: rank 0 of 1, gloo on CPU."""
    arguments = _workflow_arguments(bundle, MULTI_GPU, "train", datalist, tmp_path)
    env = {**os.environ, "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1"}
    env["MASTER_PORT"] = "29517"
    done = subprocess.run(
        [sys.executable, "-c", _CHECK_IN_PROCESS_GROUP, json.dumps(arguments)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def _workflow_arguments(bundle: str, configs: list[str], kind: str, datalist: Path, out: Path) -> dict:
    return {
        "config_file": [str(_configs(bundle) / c) for c in configs],
        "meta_file": str(_configs(bundle) / "metadata.json"),
        "logging_file": False,
        "workflow_type": kind,
        "bundle_root": str(REPO / "bundles" / bundle),
        "datalist": str(datalist),
        "output_dir": str(out),
    }


def test_metadata_verifies_against_the_schema(bundle, tmp_path):
    verify_metadata(meta_file=str(_configs(bundle) / "metadata.json"), filepath=str(SCHEMA))
    broken = ConfigParser.load_config_file(_configs(bundle) / "metadata.json")
    del broken["network_data_format"]
    (tmp_path / "metadata.json").write_text(json.dumps(broken))
    with pytest.raises(ValueError):
        verify_metadata(meta_file=str(tmp_path / "metadata.json"), filepath=str(SCHEMA))


def test_verify_net_in_out_and_ckpt_export(bundle, tmp_path):
    """As the Model Zoo runs them, with the bundle's root (a label-map bundle reads its classes from the
    shipped model)."""
    config, meta = str(_configs(bundle) / "inference.json"), str(_configs(bundle) / "metadata.json")
    root = str(REPO / "bundles" / bundle)
    verify_net_in_out(
        net_id="network_def", meta_file=meta, config_file=config, device="cpu", n=1, bundle_root=root
    )

    parser = ConfigParser()
    parser.read_config(config)
    parser["bundle_root"] = root
    net = parser.get_parsed_content("network_def").eval()
    torch.save(net.state_dict(), tmp_path / "model.pt")
    ckpt_export(
        net_id="network_def",
        filepath=str(tmp_path / "model.ts"),
        ckpt_file=str(tmp_path / "model.pt"),
        meta_file=meta,
        config_file=config,
        bundle_root=root,
    )
    exported = torch.jit.load(str(tmp_path / "model.ts"))
    x = torch.rand(1, 1, *parser["spatial_size"])
    with torch.no_grad():
        torch.testing.assert_close(exported(x), net(x))
