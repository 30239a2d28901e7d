"""Validation every ``interval`` epochs and always at the trainer's last epoch.

A run shortened below the interval (``train#trainer#max_epochs``, as MONAI Label overrides it) or ending
between two intervals still validates its final weights and saves its best model.
"""

from __future__ import annotations

from ignite.engine import Engine, Events
from monai.handlers import ValidationHandler


class LastEpochValidationHandler(ValidationHandler):
    """MONAI's ``ValidationHandler`` that also runs the validator after the trainer's last epoch."""

    def attach(self, engine: Engine) -> None:
        if not self.epoch_level:
            super().attach(engine)
            return
        engine.add_event_handler(Events.EPOCH_COMPLETED(event_filter=self._due), self)
        if self.exec_at_start:
            engine.add_event_handler(Events.STARTED, self)

    def _due(self, engine: Engine, epoch: int) -> bool:
        return epoch % self.interval == 0 or epoch == engine.state.max_epochs
