"""Named classes of a label map (``{"rectus_femoris": 1, ...}``): given once, carried by data and model.

A multi-structure bundle learns whatever structures the user's label maps hold, so nothing in it may
assume a fixed set. The names and label values are given once (``sonomuscle datalist --classes``, or by
``sonomuscle synth``) and stored in the datalist under ``"classes"``; training reads them there (the
network gets one output channel per class plus background, channel ``i + 1`` for the ``i``-th class in
order of value), saves them in the checkpoint (:class:`LabelClasses`), and inference reads them back from
the model, so a model's outputs are named as its training data's were.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch

from sonomuscle.errors import InputError
from sonomuscle.io import atomic_write_json, read_json

CLASSES_KEY = "classes"
CLASSES_FILE = "classes.json"  # beside saved label maps, so ``sonomuscle evaluate`` names them as the model
BACKGROUND = "background"
MAX_VALUE = 255  # label maps are saved as 8-bit PNG
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")  # names become file suffixes and CSV column prefixes


def class_name(text: str) -> str:
    """An annotation tool's name for a structure as a class name: ``"blood vessel"`` → ``blood_vessel``."""
    return re.sub(r"\W+", "_", text.strip()).strip("_")


def check_classes(classes: object, source: str | os.PathLike | None = None) -> dict[str, int]:
    """``classes`` ordered by value, or one line saying what is wrong with them."""
    if not isinstance(classes, Mapping) or not classes:
        raise InputError(
            source, f'classes must be {{"name": value, ...}} with at least one class, got {classes!r}'
        )
    for name, value in classes.items():
        if not isinstance(name, str) or not _NAME.match(name) or name == BACKGROUND:
            raise InputError(
                source,
                f"class name {name!r} must start with a letter and hold only letters, digits and _ "
                f"(and not be {BACKGROUND!r}: value 0 is background)",
            )
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_VALUE:
            raise InputError(
                source, f"class {name!r} has value {value!r}; values are whole numbers 1..{MAX_VALUE}"
            )
    values = list(classes.values())
    if len(set(values)) != len(values):
        raise InputError(source, f"two classes share a label value: {dict(classes)}")
    return dict(sorted(classes.items(), key=lambda item: item[1]))


def parse_classes(text: str) -> dict[str, int]:
    """``NAME=VALUE,NAME=VALUE`` or the path of a JSON file holding ``{"NAME": VALUE, ...}``."""
    pairs = named_values(text, "--classes")
    if "=" not in text:
        return check_classes(pairs, text)
    for part, value in pairs.items():
        if not value.strip().isdigit():
            raise InputError(None, f"--classes {part}={value}: expected NAME=VALUE with a whole-number VALUE")
    return check_classes({name: int(value) for name, value in pairs.items()}, "--classes")


def named_values(text: str, option: str) -> dict[str, object]:
    """``NAME=VALUE,NAME=VALUE`` (values as text) or the path of a JSON file holding ``{"NAME": VALUE}``."""
    if "=" not in text:
        path = Path(text)
        try:
            pairs = json.loads(path.read_text(encoding="utf-8"))
        except OSError as err:
            raise InputError(path, f"cannot read the {option.strip('-')} file ({err.strerror})") from None
        except ValueError as err:
            raise InputError(path, f"is not JSON ({err})") from None
        if not isinstance(pairs, dict):
            raise InputError(path, f'{option} must be {{"NAME": VALUE, ...}}, got {type(pairs).__name__}')
        return pairs
    pairs: dict[str, object] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        if name.strip() in pairs:
            raise InputError(None, f"{option} names {name.strip()!r} twice")
        pairs[name.strip()] = value
    return pairs


def datalist_classes(datalist: str | os.PathLike) -> dict[str, int]:
    """The ``"classes"`` a datalist declares for its label maps."""
    path = Path(datalist)
    content = read_json(path, "datalist not found; make one with `sonomuscle datalist --classes ...`")
    if CLASSES_KEY not in content:
        raise InputError(
            path,
            f'declares no "{CLASSES_KEY}": make it with `sonomuscle datalist ... --classes NAME=VALUE,...` '
            "or give the bundle --classes",
        )
    return check_classes(content[CLASSES_KEY], path)


def write_classes_file(folder: str | os.PathLike, classes: Mapping[str, int]) -> Path:
    """``folder/classes.json``: the names of the values in the label maps saved there."""
    return atomic_write_json(Path(folder) / CLASSES_FILE, dict(classes))


def channel_names(classes: Mapping[str, int]) -> list[str]:
    """Output channel names: background, then the classes in order of value."""
    return [BACKGROUND, *check_classes(classes)]


class LabelClasses:
    """The classes a model was trained on, saved in its checkpoint beside the weights (``state_dict``)."""

    def __init__(self, classes: Mapping[str, int]) -> None:
        self.classes = check_classes(classes)

    def state_dict(self) -> dict[str, object]:
        return {"names": list(self.classes), "values": torch.tensor(list(self.classes.values()))}

    def load_state_dict(self, state: Mapping[str, object]) -> None:
        saved = _from_state(state)
        if saved != self.classes:
            raise InputError(
                None, f"the checkpoint was trained on classes {saved}, this run declares {self.classes}"
            )


def checkpoint_classes(path: str | os.PathLike, key: str = CLASSES_KEY) -> dict[str, int]:
    """The classes saved in a checkpoint by :class:`LabelClasses` (what inference names its outputs by)."""
    from sonomuscle.checkpoints import read_checkpoint

    checkpoint = read_checkpoint(path)
    if key not in checkpoint:
        raise InputError(path, f"holds no {key!r}: not a model of a bundle with named classes")
    return check_classes(_from_state(checkpoint[key]), path)


def _from_state(state: Mapping[str, object]) -> dict[str, int]:
    """The ``{name: value}`` a :meth:`LabelClasses.state_dict` holds."""
    return dict(zip(state["names"], torch.as_tensor(state["values"]).tolist(), strict=True))


def written_values(values: Iterable[float]) -> list[int | float]:
    """Label values as a person writes them in a message: ``[7, 9]``, not ``[7.0, 9.0]``."""
    return [int(v) if float(v).is_integer() else float(v) for v in values]
