"""Imported first by every bundle config (``"$import sonomuscle.bundle_session"``): a run of
``python -m monai.bundle run`` gets sonomuscle's one-line errors and quiet library notices.

These change the whole process (``sys.excepthook``, warning filters), which a command may do and a library
must not: ``import sonomuscle`` in a user's script, notebook or server changes nothing; the bundle runs and
the ``sonomuscle`` command ask for them.
"""

from sonomuscle import quiet_library_notices
from sonomuscle.errors import install_one_line_errors

quiet_library_notices()
install_one_line_errors()
