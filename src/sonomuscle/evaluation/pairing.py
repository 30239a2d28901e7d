"""Which predicted mask goes with which reference (``sonomuscle evaluate``'s pairing rules).

A file's case name is its name without the image extension (``.nii.gz``, ``.png``, ...) and
without one trailing ``_seg``, ``_pred``, ``_prediction``, ``_mask``, ``_label`` or ``_gt``. Only masks take
part: files in an image format, less the pictures bundles write beside their masks (``*_overlay.jpg``); CSV
and JSON files are ignored.

- ``ref`` one folder: predictions pair with references of the same case name (``case01_pred.nii.gz`` with
  ``case01.nii.gz``; the 3D bundles' ``OUTPUT/pred/<image>.nii.gz`` with ``<image>.nii.gz``). When that pairs
  nothing and the predictions are named ``<reference case>_<suffix>`` with a single suffix, they pair on it
  and the class is named after it; several suffixes (the 2D bundle's ``_aponeurosis`` and ``_fascicle``)
  are an error asking which structure the folder holds.
- ``ref`` ``{structure: folder}`` (``--ref aponeurosis=DIR``): ``<case>_<structure>.<ext>`` predictions pair
  with ``<case>.<ext>`` in that structure's folder; each mask is binary and its value 1 is the class
  ``structure``. Predictions of other structures are left alone.

Nothing paired at all is an :class:`~sonomuscle.errors.InputError` naming both sides.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sonomuscle.data.readers import SUPPORTED_SUFFIXES, stem_of, suffix_of
from sonomuscle.errors import InputError

NAME_SUFFIXES = ("_seg", "_pred", "_prediction", "_mask", "_label", "_gt")
PICTURE_SUFFIXES = ("_overlay",)  # pictures the bundles write beside their masks
MISSING_PREDICTION, MISSING_REFERENCE = "missing prediction", "missing reference"


@dataclass(frozen=True)
class Pair:
    """A prediction and its reference; ``structure`` names a binary-mask pair's class (None: label maps)."""

    structure: str | None
    pred: Path
    ref: Path


@dataclass
class Case:
    """Everything found for one case name: its pairs, and the (structure, problem) of what did not pair."""

    name: str
    pairs: list[Pair] = field(default_factory=list)
    problems: list[tuple[str | None, str]] = field(default_factory=list)


def references_from_cli(values: Sequence[str]) -> Path | dict[str, Path]:
    """``--ref`` values: one bare ``DIR``, or ``STRUCTURE=DIR`` once per structure."""
    structures = {
        key: Path(folder) for key, sep, folder in (value.partition("=") for value in values) if key and sep
    }
    if len(structures) == len(values):
        return structures
    if len(values) == 1 and "=" not in values[0]:
        return Path(values[0])
    raise InputError(None, "give --ref DIR once, or --ref STRUCTURE=DIR once for each structure")


def case_name(path: Path) -> str:
    """The pairing key of a file: its name less the image extension and one known suffix."""
    name = stem_of(path)
    for suffix in NAME_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def pair_cases(pred: Path, ref: Path | Mapping[str, Path]) -> list[Case]:
    """Every case name found, sorted, with its pairs and what did not pair (see the module's rules)."""
    preds = mask_files(Path(pred))
    refs = reference_folders(ref)
    if None not in refs:
        return _pair_structures(preds, refs)
    references = mask_files(refs[None])
    cases = _cases(_match(by_name(preds, case_name), by_name(references, case_name), None))
    if any(case.pairs for case in cases):
        return cases
    suffixes = sorted(_name_suffixes(preds, {case_name(path) for path in references}))
    if len(suffixes) > 1:
        raise InputError(
            pred,
            f"predictions end in {', '.join('_' + s for s in suffixes)}: say which structure the references "
            f"are, e.g. --ref {suffixes[0]}={refs[None]}",
        )
    return _pair_structures(preds, {suffixes[0]: refs[None]}) if suffixes else cases


def reference_folders(ref: Path | Mapping[str, Path]) -> dict[str | None, Path]:
    """``{None: folder}`` for one folder of label maps, else ``{structure: folder}``."""
    if isinstance(ref, Mapping):
        return {structure: Path(folder) for structure, folder in ref.items()}
    return {None: Path(ref)}


def mask_files(folder: Path) -> list[Path]:
    """Files in an image format, less hidden files and the pictures bundles write beside their masks."""
    return [
        path
        for path in sorted(folder.iterdir())
        if path.is_file()
        and not path.name.startswith(".")
        and suffix_of(path) in SUPPORTED_SUFFIXES
        and not stem_of(path).endswith(PICTURE_SUFFIXES)
    ]


def by_name(paths: Iterable[Path], name: Callable[[Path], str | None]) -> dict[str, list[Path]]:
    """Files grouped by ``name(path)``; a file whose name is None is left out."""
    files: dict[str, list[Path]] = {}
    for path in paths:
        key = name(path)
        if key is not None:
            files.setdefault(key, []).append(path)
    return files


def _match(
    preds: dict[str, list[Path]], refs: dict[str, list[Path]], structure: str | None
) -> Iterator[tuple[str, str | None, Pair | str]]:
    """(case, structure, its pair or why there is none) for every case name on either side."""
    for key in sorted(preds.keys() | refs.keys()):
        found = {"prediction": preds.get(key, []), "reference": refs.get(key, [])}
        shared = [
            f"several {side} files share this case name: {[p.name for p in paths]}"
            for side, paths in found.items()
            if len(paths) > 1
        ]
        if shared:
            yield key, structure, "; ".join(shared)
        elif not found["reference"]:
            yield key, structure, f"{MISSING_REFERENCE} for prediction {found['prediction'][0].name}"
        elif not found["prediction"]:
            yield key, structure, f"{MISSING_PREDICTION} for reference {found['reference'][0].name}"
        else:
            yield key, structure, Pair(structure, found["prediction"][0], found["reference"][0])


def _cases(matches: Iterable[tuple[str, str | None, Pair | str]]) -> list[Case]:
    cases: dict[str, Case] = {}
    for key, structure, match in matches:
        case = cases.setdefault(key, Case(key))
        if isinstance(match, Pair):
            case.pairs.append(match)
        else:
            case.problems.append((structure, match))
    return [cases[key] for key in sorted(cases)]


def _pair_structures(preds: list[Path], refs: Mapping[str, Path]) -> list[Case]:
    """``<case>_<structure>`` predictions against ``<case>`` in each structure's folder."""
    matches = []
    for structure, folder in refs.items():
        own = by_name(preds, lambda path, s=structure: _structure_case(stem_of(path), s, refs))
        matches += _match(own, by_name(mask_files(folder), case_name), structure)
    return _cases(matches)


def _structure_case(stem: str, structure: str, structures: Iterable[str]) -> str | None:
    """``img1`` of ``img1_<structure>``; None unless it is the longest of ``structures`` the name ends in."""
    ends = [s for s in structures if stem.endswith(f"_{s}") and len(stem) > len(s) + 1]
    if not ends or max(ends, key=len) != structure:
        return None
    return stem[: -len(structure) - 1]


def _name_suffixes(preds: list[Path], ref_names: set[str]) -> set[str]:
    """The ``<suffix>`` of predictions named ``<reference case>_<suffix>`` (longest reference case first)."""
    suffixes = set()
    for stem in map(stem_of, preds):
        cuts = [i for i, char in enumerate(stem) if char == "_" and stem[:i] in ref_names and stem[i + 1 :]]
        if cuts:
            suffixes.add(stem[cuts[-1] + 1 :])
    return suffixes


def nothing_paired(pred: Path, refs: Mapping[str | None, Path]) -> str:
    """One line: both sides, how many masks each holds with an example name, and the 3D bundles' layout."""
    references = [path for folder in refs.values() for path in mask_files(folder)]
    where = ", ".join(str(folder) if s is None else f"{s}={folder}" for s, folder in refs.items())
    preds = mask_files(pred)
    line = (
        f"no prediction pairs with a reference: {pred} holds {_examples(preds)}, "
        f"{where} holds {_examples(references)}"
    )
    if not preds and (pred / "pred").is_dir():
        line += f"; the 3D bundles write their masks to OUTPUT/pred: try --pred {pred / 'pred'}"
    return line


def _examples(files: list[Path]) -> str:
    return counted(len(files), "mask file") + (f" (e.g. {files[0].name})" if files else "")


def counted(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def unpaired_counts(cases: list[Case]) -> dict[str, int]:
    reasons = [problem for case in cases for _, problem in case.problems]
    return {
        "n_without_prediction": sum(r.startswith(MISSING_PREDICTION) for r in reasons),
        "n_without_reference": sum(r.startswith(MISSING_REFERENCE) for r in reasons),
    }
