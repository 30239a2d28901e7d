"""Run the project's bundles the MONAI way (``python -m monai.bundle run``) and read back what they logged."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from sonomuscle.errors import InputError

PACKAGED_BUNDLES = Path(__file__).resolve().parent / "bundles"  # what a wheel carries
REPO_BUNDLES = Path(__file__).resolve().parents[2] / "bundles"  # an editable install's source tree


def bundle_roots() -> list[Path]:
    """Folders searched for bundles, first match wins: the packaged copy, the repository, ``$SONOMUSCLE_BUNDLES``."""
    extra = os.environ.get("SONOMUSCLE_BUNDLES")
    return [PACKAGED_BUNDLES, REPO_BUNDLES, *([Path(extra)] if extra else [])]


def bundle_names() -> list[str]:
    """Every bundle found in :func:`bundle_roots` (a folder with ``configs/metadata.json``), sorted."""
    return sorted(
        {p.parent.parent.name for root in bundle_roots() for p in root.glob("*/configs/metadata.json")}
    )


def bundle_dir(name: str) -> Path:
    """The folder of bundle ``name``, from the first of :func:`bundle_roots` that has it; a path to a
    bundle folder (e.g. one ``sonomuscle bundle export`` wrote) is that folder."""
    if (Path(name) / "configs" / "metadata.json").is_file():
        return Path(name).resolve()
    for root in bundle_roots():
        if (root / name / "configs" / "metadata.json").is_file():
            return root / name
    raise InputError(
        None,
        f"no bundle {name!r}; known bundles: {', '.join(bundle_names()) or 'none'} (SONOMUSCLE_BUNDLES adds a folder)",
    )


def bundle_command(name: str, configs: str | Sequence[str], **overrides: object) -> list[str]:
    """The ``python -m monai.bundle run`` command line for one or several config files of a bundle."""
    root = bundle_dir(name)
    names = [configs] if isinstance(configs, str) else list(configs)
    files = [str(root / "configs" / f"{c}.json") for c in names]
    command = [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        files[0] if len(files) == 1 else repr(files),
        "--meta_file",
        str(root / "configs" / "metadata.json"),
        "--logging_file",
        str(root / "configs" / "logging.conf"),
        "--bundle_root",
        str(root),
    ]
    for key, value in overrides.items():
        command += [f"--{key}", _override_text(value)]
    return command


def run_bundle(name: str, configs: str | Sequence[str], processes: int = 1, **overrides: object) -> None:
    """Run a bundle workflow in a child process; its progress goes to this terminal; failure raises.

    With several ``processes`` it runs under ``torchrun`` on this machine (the configs must include the
    bundle's ``multi_gpu_*`` one): one process per GPU, or CPU processes sharing the cores.
    """
    command = bundle_command(name, configs, **overrides)
    if processes > 1:
        command = under_torchrun(command, processes)
    result = subprocess.run(command, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"bundle {name} {configs} failed (exit {result.returncode}): {' '.join(command)}")


def under_torchrun(command: Sequence[str], processes: int, *options: str) -> list[str]:
    """A ``bundle_command`` line run in ``processes`` processes by torchrun's standalone launcher on this
    machine; ``options`` go to the launcher (e.g. ``--log-dir``)."""
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", *options]
    return [command[0], *launcher, *command[1:]]


def _override_text(value: object) -> str:
    """Command-line text that ``monai.bundle`` parses back into the same value."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (list, tuple)):
        return repr(list(value))
    return str(value)
