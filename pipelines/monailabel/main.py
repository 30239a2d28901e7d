"""MONAI Label app folder for ``monailabel start_server --app pipelines/monailabel``.

The app lives in ``sonomuscle.labelapp`` (installed in MONAI Label's environment by ``sonomuscle label-env``);
``sonomuscle label-server`` starts the server with this folder. See docs/monailabel.md.
"""

from sonomuscle.labelapp.app import SonomuscleApp

__all__ = ["SonomuscleApp"]
