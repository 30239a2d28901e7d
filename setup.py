"""Build hook: wheels and sdists carry the bundles (``bundles/<name>/`` → ``sonomuscle/bundles/<name>/``).

The repository's ``bundles/`` stays the one source of truth; ``build_bundles`` copies each bundle's shipped
files (``sonomuscle.bundles_export.shipped_files``) into the wheel and names them for the sdist. Editable
installs copy nothing: ``sonomuscle.workflows`` finds the repository's ``bundles/`` there.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from setuptools import Command, setup
from setuptools.command.build import build

ROOT = Path(__file__).resolve().parent
BUNDLES = "bundles"
PACKAGE_BUNDLES = Path("sonomuscle", "bundles")


def _load_bundles_export():
    """``src/sonomuscle/bundles_export.py`` by path: the package itself is not importable while it builds."""
    spec = importlib.util.spec_from_file_location(
        "_sonomuscle_bundles_export", ROOT / "src" / "sonomuscle" / "bundles_export.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


shipped_files = _load_bundles_export().shipped_files


class build_bundles(Command):
    """A ``build`` sub-command (setuptools' SubCommand protocol) that copies the bundles into the package."""

    description = "copy bundles/<name>/ (configs, docs, weights, LICENSE) into the package"
    user_options = []  # noqa: RUF012 (distutils reads this class attribute)
    editable_mode = False

    def initialize_options(self) -> None:
        self.build_lib = None

    def finalize_options(self) -> None:
        self.set_undefined_options("build_py", ("build_lib", "build_lib"))

    def run(self) -> None:
        if self.editable_mode:
            return
        # a bundle file deleted since the last build must not linger in build/lib
        shutil.rmtree(Path(self.build_lib) / PACKAGE_BUNDLES, ignore_errors=True)
        for dest, source in self.get_output_mapping().items():
            Path(dest).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / source, dest)

    def get_source_files(self) -> list[str]:
        return list(self.get_output_mapping().values())

    def get_outputs(self) -> list[str]:
        return list(self.get_output_mapping())

    def get_output_mapping(self) -> dict[str, str]:
        mapping = {}
        for metadata in sorted((ROOT / BUNDLES).glob("*/configs/metadata.json")):
            bundle = metadata.parent.parent
            for rel in shipped_files(bundle):
                dest = Path(self.build_lib) / PACKAGE_BUNDLES / bundle.name / rel
                mapping[str(dest)] = (Path(BUNDLES) / bundle.name / rel).as_posix()
        return mapping


class build_with_bundles(build):
    sub_commands = [*build.sub_commands, ("build_bundles", None)]  # noqa: RUF012


setup(cmdclass={"build": build_with_bundles, "build_bundles": build_bundles})
