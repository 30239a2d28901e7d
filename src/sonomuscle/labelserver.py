"""MONAI Label's own environment and server: ``sonomuscle label-env`` and ``sonomuscle label-server``.

MONAI Label 0.8.5 cannot share the main environment: through pydicom-seg it pins numpy < 2 and pydicom 2.4,
it imports torchvision (whose only CPU-compatible wheels here come with a newer torch), and it asks for
``sam2``, which has no wheel. Its environment therefore gets

- the torch/torchvision pair ``TORCH`` (on this project's machines a local build that runs on the CPU;
  the same pair runs on CUDA GPUs);
- ``monailabel`` and ``pydicom-seg`` without their declared requirements, and instead the requirements
  they use, ``REQUIREMENTS`` (pydicom 2.4 and the DICOM clients of its time; numpy 2 works for everything
  the server imports; SAM2, scribbles and MLflow are left out);
- sonomuscle itself from this source tree (editable), so the server runs the same bundles and code.

Nothing is downloaded at run time: the app serves the bundles sonomuscle carries, and SAM2 is not loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sonomuscle.errors import InputError

SOURCE_TREE = Path(__file__).resolve().parents[2]
APP_DIR = SOURCE_TREE / "pipelines" / "monailabel"
DEFAULT_ENV = SOURCE_TREE / ".venv-label"
TORCH = ("torch==2.14.1", "torchvision==0.29.1")
WITHOUT_DEPS = ("monailabel==0.8.5", "pydicom-seg==0.4.1")
REQUIREMENTS = (
    "pydicom==2.4.4",
    "pynetdicom==2.1.1",
    "dicomweb-client==0.59.1",
    "jsonschema>=3.2,<4",  # pydicom-seg's
    "SimpleITK>=2.3",
    "psutil>=5.9",
    "uvicorn>=0.29.0",
    "fastapi>=0.110.2",
    "pydantic>=2.7.0",
    "pydantic-settings>=2.2.1",
    "python-dotenv>=1.0.1",
    "python-multipart>=0.0.9",
    "httpx>=0.27.0",
    "requests>=2.31.0",
    "requests-toolbelt>=1.0.0",
    "urllib3>=2.2.1",
    "schedule>=1.2.1",
    "timeloop>=1.0.2",
    "expiringdict>=1.2.2",
    "expiring_dict>=1.1.0",
    "cachetools>=5.3.3",
    "watchdog>=4.0.0",
    "girder-client>=3.2.3",
    "einops>=0.7.0",
    "filelock>=3.11.0",
    "passlib>=1.7.4",
    "pyjwt>=2.8.0",
    "bcrypt>=4.1.2",
    "shapely>=2.0.4",
    "scikit-learn>=1.3",
    "google-auth>=2.29.0",
)
# the files MONAI Label lists as images of a studies folder: what sonomuscle's readers take
STUDY_PATTERNS = (
    "*.png",
    "*.jpg",
    "*.jpeg",
    "*.tif",
    "*.tiff",
    "*.bmp",
    "*.nii.gz",
    "*.nii",
    "*.nrrd",
    "*.mha",
    "*.dcm",
)


def env_python(env: Path) -> Path:
    return Path(env) / "bin" / "python"


def create_env(env: Path = DEFAULT_ENV, torch: Sequence[str] = TORCH) -> Path:
    """Create (or complete) MONAI Label's environment at ``env``; its Python is returned.

    Each step is a pip install into the same environment, so running it again finishes an interrupted
    install and changes nothing in a finished one.
    """
    if not (SOURCE_TREE / "pyproject.toml").is_file():
        raise InputError(
            SOURCE_TREE, "MONAI Label's environment is built from a source checkout of sonomuscle"
        )
    env = Path(env)
    if not env_python(env).is_file():
        print(f"creating {env}", flush=True)
        venv.EnvBuilder(with_pip=True).create(env)
    steps = [
        list(torch),
        [*REQUIREMENTS, "-e", str(SOURCE_TREE)],
        ["--no-deps", *WITHOUT_DEPS],
    ]
    for packages in steps:
        command = [str(env_python(env)), "-m", "pip", "install", "--quiet", *packages]
        print(" ".join(command[3:]), flush=True)
        if subprocess.run(command, check=False).returncode != 0:
            raise InputError(env, f"pip could not install {' '.join(packages)} (its message is above)")
    check = [str(env_python(env)), "-c", "import monailabel, sonomuscle.labelapp.app"]
    if subprocess.run(check, check=False).returncode != 0:
        raise InputError(env, "MONAI Label was installed but does not import (its message is above)")
    print(f"MONAI Label's environment is ready: {env}", flush=True)
    return env_python(env)


@dataclass(frozen=True)
class LabelServer:
    """One MONAI Label server of this app: its studies folder, bundles (empty: all), address and environment."""

    studies: Path
    bundles: Sequence[str] = ()
    host: str = "127.0.0.1"  # this machine only, unless told otherwise
    port: int = 8000
    env: Path = DEFAULT_ENV

    def command(self) -> list[str]:
        """The ``monailabel start_server`` command line."""
        return [
            str(env_python(self.env)),
            "-m",
            "monailabel.main",
            "start_server",
            "--app",
            str(APP_DIR),
            "--studies",
            str(Path(self.studies).resolve()),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--conf",
            "models",
            ",".join(self.bundles) or "all",
        ]

    def start(self) -> subprocess.Popen:
        """Start it (it runs until stopped); the studies folder must exist, the environment too."""
        if not Path(self.studies).is_dir():
            raise InputError(self.studies, "--studies must be a folder of images")
        if not env_python(self.env).is_file():
            raise InputError(
                self.env, "no MONAI Label environment here: create it with `sonomuscle label-env`"
            )
        return subprocess.Popen(self.command(), env=server_environment())

    def serve(self) -> int:
        """Run it in the foreground until it stops (Ctrl-C stops it); its exit status."""
        server = self.start()
        print(
            f"MONAI Label: http://{self.host}:{self.port} (studies {self.studies}); Ctrl-C stops it",
            file=sys.stderr,
        )
        try:
            return server.wait()
        except KeyboardInterrupt:
            server.terminate()
            return server.wait()


def server_environment() -> dict[str, str]:
    """Settings for a server that works offline: the image types of a studies folder; no scoring on start."""
    return {
        **os.environ,
        "MONAI_LABEL_DATASTORE_FILE_EXT": json.dumps(list(STUDY_PATTERNS)),
        "MONAI_LABEL_AUTO_UPDATE_SCORING": "false",
        "PYTHONUNBUFFERED": "1",
    }
