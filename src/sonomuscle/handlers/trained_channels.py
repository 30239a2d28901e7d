"""Which output channels of a multi-label model ever saw an annotation, saved inside its checkpoint.

A model trained on aponeurosis-only images still has a fascicle channel; its output is untrained noise,
and measures taken from it (pennation angle, fascicle length) would be numbers without meaning.
``TrainedChannels`` watches the training labels (``-1`` = not annotated, docs/CONVENTIONS.md), goes into
the checkpoint beside the network (``state_dict``), and tells inference which channels to trust.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class TrainedChannels:
    """Ignite handler and checkpointable record of the channels that had annotated pixels in training."""

    def __init__(self, names: Sequence[str], label_key: str = "label") -> None:
        self.names = list(names)
        self.label_key = label_key
        self.trained = torch.zeros(len(self.names), dtype=torch.bool)

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.EPOCH_COMPLETED, lambda _: self.gather())

    def gather(self) -> None:
        """Under several processes each sees its share of the data: a channel trained on any rank counts."""
        import ignite.distributed as idist

        if idist.get_world_size() > 1:
            self.trained = idist.all_reduce(self.trained.to(torch.int32), op="MAX").bool().cpu()

    def __call__(self, engine) -> None:
        batch = engine.state.batch
        # MONAI trainers decollate the batch into one dict per case; a plain engine keeps it collated
        cases = [d[self.label_key] for d in batch] if isinstance(batch, list) else batch[self.label_key]
        for label in cases:
            # a plain tensor, not a MetaTensor: the record must load with weights_only=True
            label = torch.as_tensor(label).as_subclass(torch.Tensor)
            annotated = (label >= 0).reshape(len(self.names), -1).any(dim=1)
            self.trained |= annotated.cpu()

    def untrained(self) -> list[str]:
        """Names of the channels no training label ever annotated."""
        return [name for name, done in zip(self.names, self.trained.tolist(), strict=True) if not done]

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"trained": self.trained.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        trained = torch.as_tensor(state["trained"], dtype=torch.bool)
        if trained.numel() != len(self.names):
            raise ValueError(
                f"checkpoint records {trained.numel()} channels, the bundle has {len(self.names)}"
            )
        self.trained = trained.clone()
