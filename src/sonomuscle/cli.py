"""The ``sonomuscle`` command: datalists, phantoms, batch evaluation, the demo and the shipped bundles.

Each sub-command parses its arguments here and hands them to one library function, so everything the
command does can also be called from Python.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from sonomuscle import __version__, quiet_library_notices
from sonomuscle.data.phantoms import PHANTOM_MODULES
from sonomuscle.errors import InputError, user_error

PHANTOM_TASKS = tuple(PHANTOM_MODULES)
EVALUATION_MEASURES = ("dice", "hd95", "assd", "volume", "thickness", "echo")


def _key_value(text: str, default_key: str) -> tuple[str, str]:
    """``KEY=VALUE`` → (KEY, VALUE); a bare ``VALUE`` gets ``default_key``."""
    key, sep, value = text.partition("=")
    return (key, value) if sep else (default_key, text)


def _labels_arg(text: str) -> tuple[str, Path]:
    key, value = _key_value(text, "label")
    return key, Path(value)


def _classes_arg(text: str) -> dict[str, int]:
    from sonomuscle.classes import parse_classes

    try:
        return parse_classes(text)
    except InputError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _positive_int(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number ≥ 1, got {text!r}")
    return int(text)


def _crop_arg(text: str) -> tuple[int, int, int, int]:
    parts = text.split(",")
    if (
        len(parts) != 4
        or not all(p.strip().isdigit() for p in parts)
        or int(parts[2]) < 1
        or int(parts[3]) < 1
    ):
        raise argparse.ArgumentTypeError(f"expected X,Y,WIDTH,HEIGHT in whole pixels, got {text!r}")
    return tuple(int(p) for p in parts)  # type: ignore[return-value]


def _names_arg(text: str) -> list[str]:
    return [name.strip() for name in text.split(",")]


def _override_arg(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` with VALUE read as JSON where it is (numbers, lists, true/false), else as text."""
    import json

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def _measures_arg(text: str) -> list[str]:
    names = [m.strip() for m in text.split(",") if m.strip()]
    unknown = sorted(set(names) - set(EVALUATION_MEASURES))
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown measures {unknown}; choose from {list(EVALUATION_MEASURES)}"
        )
    return names


def _pennation_arg(text: str) -> tuple[float, float]:
    """``MIN,MAX`` in degrees."""
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN,MAX in degrees, got {text!r}") from None
    return low, high


def _map_arg(text: str) -> tuple[str, str]:
    """``MEASURE=COLUMN`` → (MEASURE, COLUMN)."""
    measure, sep, column = (part.strip() for part in text.partition("="))
    if not (sep and measure and column):
        raise argparse.ArgumentTypeError(f"expected MEASURE=COLUMN, got {text!r}")
    return measure, column


def _bins_arg(text: str) -> tuple[str, list[float]]:
    """``MEASURE=E1,E2,...`` → (MEASURE, edges): at least two numbers."""
    measure, sep, edges = text.partition("=")
    try:
        values = [float(e) for e in edges.split(",")]
    except ValueError:
        values = []
    if not (sep and measure.strip() and len(values) >= 2):
        raise argparse.ArgumentTypeError(f"expected MEASURE=EDGE,EDGE[,...] (numbers), got {text!r}")
    return measure.strip(), values


class _DefaultsFormatter(argparse.HelpFormatter):
    """``--help`` states an option's default, unless there is none to state (None, False, required)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        unstated = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if unstated or action.required or "default" in text:
            return text
        return f"{text} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    def __init__(self, **kwargs) -> None:
        super().__init__(formatter_class=_DefaultsFormatter, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sonomuscle", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("datalist", help="pair images with label masks and write an MSD-style datalist JSON")
    p.add_argument("--images", type=Path, required=True, help="folder of images")
    p.add_argument(
        "--labels",
        type=_labels_arg,
        action="append",
        metavar="[KEY=]DIR",
        help="folder of masks, stored under KEY (default 'label'); repeat for several label kinds",
    )
    p.add_argument(
        "--table",
        type=Path,
        metavar="CSV",
        help="instead of masks: a table with a row per image (classification or state regression)",
    )
    p.add_argument("--image-column", default="image", help="with --table: column naming each image file")
    p.add_argument("--class-column", help="with --table: column holding each image's class")
    p.add_argument(
        "--class-names",
        type=_names_arg,
        metavar="A,B,...",
        help="with --class-column: the classes, in output order (default: the values found, sorted)",
    )
    p.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="COLUMN",
        help="with --table: a column of continuous values to estimate; repeat for several",
    )
    p.add_argument("--subject-column", help="with --table: column naming each image's subject")
    p.add_argument(
        "--roi-masks",
        type=Path,
        metavar="DIR",
        help="with --table: masks of the region of interest, named as the images (the bundles crop to them)",
    )
    p.add_argument(
        "--box-columns",
        type=_names_arg,
        metavar="X,Y,W,H",
        help="with --table: four columns holding a box in pixels to crop each image to",
    )
    p.add_argument(
        "--leave-one-subject-out",
        action="store_true",
        help="with --subject-column: one fold per subject (no test split)",
    )
    p.add_argument("--out", type=Path, required=True, help="datalist JSON to write")
    p.add_argument("--val-fraction", type=float, default=0.2, help="share of subjects for validation")
    p.add_argument("--test-fraction", type=float, default=0.0, help="share of subjects held out as test")
    p.add_argument("--folds", type=int, default=None, help="also assign K cross-validation folds")
    p.add_argument(
        "--group-by", default=None, metavar="REGEX", help="regex whose first group names the subject"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the split")
    p.add_argument(
        "--spacing",
        type=float,
        default=None,
        metavar="MM",
        help="pixel size in mm, the same along both axes (the scanner's depth scale over the image rows), "
        "stored in every entry whose file carries none; DICOM ultrasound regions win",
    )
    p.add_argument(
        "--classes",
        type=_classes_arg,
        default=None,
        metavar="NAME=VALUE,...|JSON",
        help="the labels are label maps of these named classes (e.g. rectus_femoris=1,vastus_lateralis=2, "
        'or a JSON file {"name": value}); stored in the datalist, maps with other values rejected',
    )
    p.add_argument(
        "--partial",
        action="store_true",
        help="with --classes: each label map outlines only the classes it holds; the others may lie "
        "anywhere in its background (entries list their classes under 'annotated')",
    )

    p = sub.add_parser("synth", help="write synthetic ultrasound phantoms with exact ground truth")
    p.add_argument("--task", choices=PHANTOM_TASKS, required=True, help="which phantoms")
    p.add_argument(
        "--out", type=Path, required=True, help="folder to write (images, labels, truth, datalist)"
    )
    p.add_argument("--n", type=_positive_int, default=20, help="number of cases")
    p.add_argument("--seed", type=int, default=0, help="same seed, same phantoms")
    p.add_argument(
        "--pennation",
        type=_pennation_arg,
        metavar="MIN,MAX",
        help="pennation angles of the architecture2d phantoms in degrees (default: 5,60)",
    )

    p = sub.add_parser("evaluate", help="batch evaluation of predicted masks against references")
    p.add_argument(
        "--pred",
        type=Path,
        required=True,
        metavar="DIR",
        help="folder of predicted masks (a bundle's output)",
    )
    p.add_argument(
        "--ref",
        action="append",
        required=True,
        metavar="[STRUCTURE=]DIR",
        help="folder of reference masks, paired by case name; STRUCTURE=DIR pairs <case>_STRUCTURE "
        "predictions with <case> in DIR (repeat for each structure)",
    )
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="report folder")
    p.add_argument(
        "--classes",
        type=_classes_arg,
        action="append",
        default=None,
        metavar="NAME=VALUE,...|JSON",
        help="class names and their values in the label maps; repeatable (default: classes.json in --pred, "
        "else label_<value> for every value found)",
    )
    p.add_argument(
        "--measures",
        type=_measures_arg,
        default=None,
        help=f"comma-separated subset of {','.join(EVALUATION_MEASURES)} (default: all, thickness only "
        "for classes whose name contains 'wall'; listing thickness measures it for every class; echo "
        "intensity needs --images)",
    )
    p.add_argument(
        "--images",
        type=Path,
        metavar="DIR",
        help="the cases' images (paired by case name): overlays are drawn on them and echo intensity "
        "measured in them",
    )
    p.add_argument(
        "--spacing",
        type=float,
        metavar="MM",
        help="pixel (voxel) size in mm, the same along every axis, for masks whose files carry none "
        "(PNG masks); NIfTI and DICOM spacing wins",
    )
    p.add_argument("--workers", type=_positive_int, default=1, help="parallel processes")

    p = sub.add_parser("demo", help="phantoms → train → evaluate → report, end to end on this machine")
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="folder for phantoms, model, report")
    p.add_argument("--n", type=_positive_int, help="number of phantoms (default: the demo's own)")
    p.add_argument("--epochs", type=_positive_int, help="training epochs (default: the demo's own)")
    p.add_argument("--seed", type=int, default=0, help="same seed, same phantoms and training")

    p = sub.add_parser(
        "measure", help="thickness, pennation angle and fascicle length of images and videos, pretrained"
    )
    p.add_argument(
        "paths", nargs="+", type=Path, help="images, DICOM (single or cine), videos (mp4/avi/mov), folders"
    )
    p.add_argument(
        "--out", type=Path, required=True, help="folder for measurements.csv/.xlsx, report.html, overlays"
    )
    calibration = p.add_mutually_exclusive_group()
    calibration.add_argument(
        "--spacing",
        type=float,
        metavar="MM",
        help="pixel size in mm, the same along both axes (a DICOM's own calibration wins)",
    )
    calibration.add_argument(
        "--depth",
        type=float,
        metavar="MM",
        help="imaged depth in mm as the scanner shows it, over the rows of the ultrasound picture",
    )
    p.add_argument("--bundle", type=Path, help="a trained bundle folder (default: the shipped weights)")
    p.add_argument("--no-overlay", action="store_true", help="skip the overlay pictures and videos")
    p.add_argument(
        "--float32",
        action="store_true",
        help="run the network in float32 even where the CPU (bfloat16) or GPU (float16) is faster with "
        "mixed precision: results that do not depend on the hardware",
    )
    p.add_argument(
        "--no-mirror",
        action="store_true",
        help="run the network on the picture alone instead of averaging it with its mirror image: faster, "
        "but a mirrored picture no longer measures exactly the same",
    )
    p.add_argument(
        "--step", type=_positive_int, default=1, help="measure every n-th frame of loops and videos"
    )
    p.add_argument(
        "--crop",
        type=_crop_arg,
        metavar="X,Y,W,H",
        help="the ultrasound picture's box in pixels (default: found in each screen capture)",
    )
    p.add_argument(
        "--thickness-at",
        metavar="WHERE",
        help="also measure thickness (perpendicular and vertical) here: a fraction of the width from the "
        "left edge (0.1) or a pixel column (120px); the centre is always measured",
    )
    p.add_argument(
        "--processes",
        type=_positive_int,
        default=1,
        metavar="N",
        help="measure in N processes under torchrun, each its share of the inputs: one per GPU, or CPU "
        "processes on a many-core machine (the results are the same as one process's)",
    )

    p = sub.add_parser(
        "crossval",
        help="cross-validate an image-level bundle over its datalist's folds (e.g. leave-one-subject-out)",
    )
    p.add_argument("bundle", help="bundle name (muscle_state_regression_2d, ...) or a bundle folder")
    p.add_argument(
        "--datalist", type=Path, required=True, help="a datalist with folds (--leave-one-subject-out)"
    )
    p.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="folder for the folds and the report"
    )
    p.add_argument(
        "--set",
        type=_override_arg,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a bundle setting for every fold, e.g. max_epochs=40 or spatial_size=[96,96]; repeatable",
    )

    p = sub.add_parser(
        "agreement",
        help="measurements against several human observers: the software vs their mean, each observer vs "
        "the others",
    )
    p.add_argument(
        "--measurements",
        type=Path,
        required=True,
        metavar="FILE",
        help="a `sonomuscle measure` table (.csv/.xlsx)",
    )
    p.add_argument(
        "--observers",
        type=Path,
        required=True,
        metavar="FILE",
        help="observers' table (.csv/.xlsx): a row per image [, frame] and observer, a column per measure",
    )
    p.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="folder for the tables and report.html"
    )
    p.add_argument(
        "--map",
        type=_map_arg,
        action="append",
        metavar="MEASURE=COLUMN",
        help="compare the measure with this observers' column; repeatable (default: the columns both tables "
        "have)",
    )
    p.add_argument(
        "--image-column", help="observers' column naming the image (default: image, file or filename)"
    )
    p.add_argument("--observer-column", default="observer", help="observers' column naming the observer")
    p.add_argument(
        "--frame-column", default="frame", help="observers' column with the frame of a loop, if any"
    )
    p.add_argument(
        "--observer-spacing",
        type=float,
        metavar="MM",
        help="mm per pixel of the observers' lengths, for measurements in mm (columns named *_mm stay)",
    )
    p.add_argument(
        "--bins",
        type=_bins_arg,
        action="append",
        metavar="MEASURE=E1,E2,...",
        help="ranges of the reference for the errors by range; repeatable (default: 0,15,25,35,90 for "
        "angles, the quartiles for lengths)",
    )
    p.add_argument("--worst", type=_positive_int, default=10, help="worst items listed per measure")
    p.add_argument(
        "--large-angle", type=float, default=5.0, metavar="DEG", help="an angle error the flags should catch"
    )
    p.add_argument(
        "--large-length",
        type=float,
        default=10.0,
        metavar="PERCENT",
        help="a length error the flags should catch, in %% of the reference",
    )

    p = sub.add_parser("frames", help="write frames of cine loops or videos as 2D images to annotate")
    p.add_argument("paths", type=Path, nargs="+", metavar="PATH", help="multi-frame DICOM or video files")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the frames (NIfTI)")
    p.add_argument("--step", type=_positive_int, default=1, help="every n-th frame (default: 1, all)")
    p = sub.add_parser(
        "coco-labels",
        help="COCO segmentation JSON (CVAT, Label Studio, ...) → a label map per image and classes.json",
    )
    p.add_argument("annotations", type=Path, metavar="JSON", help="the COCO annotation file")
    p.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="folder for the label maps (indexed PNG)"
    )
    p = sub.add_parser(
        "colour-labels",
        aliases=["color-labels"],
        help="colour-coded (RGB) label maps → label maps of class values and classes.json",
    )
    p.add_argument("maps", type=Path, metavar="DIR", help="folder of colour-coded label maps")
    p.add_argument(
        "--colours",
        "--colors",
        required=True,
        metavar="NAME=#RRGGBB,...",
        help="each structure's colour (or a JSON file of them); classes get values 1, 2, ... in this order",
    )
    p.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="folder for the label maps (indexed PNG)"
    )
    p = sub.add_parser("label-env", help="create MONAI Label's own environment (offline, CPU or GPU)")
    p.add_argument("--env", type=Path, default=None, help="where (default: .venv-label in the source tree)")
    p = sub.add_parser("label-server", help="serve the segmentation bundles to 3D Slicer through MONAI Label")
    p.add_argument("--studies", type=Path, required=True, help="folder of images to annotate (2D and 3D)")
    p.add_argument(
        "--bundles", default="", help="comma list of bundles to serve (default: every segmentation bundle)"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--port", type=_positive_int, default=8000, help="port (default: 8000)")
    p.add_argument("--env", type=Path, default=None, help="MONAI Label's environment (see label-env)")

    p = sub.add_parser("bundle", help="the bundles this package ships: list them, or write one out")
    bundle_sub = p.add_subparsers(dest="bundle_command", required=True)
    bundle_sub.add_parser("list", help="name, version, shipped weights and task of each bundle")
    p = bundle_sub.add_parser("export", help="write a standalone bundle folder that monai.bundle runs")
    p.add_argument("name", help="bundle name (see `sonomuscle bundle list`)")
    p.add_argument("dir", type=Path, help="folder to write; must be new or empty")
    return parser


def run(args: argparse.Namespace) -> None:
    """Dispatch one parsed command; imports are local so ``sonomuscle --help`` stays fast."""
    if args.command == "datalist" and args.table is not None:
        _table_datalist(args)
    elif args.command == "datalist":
        from sonomuscle.data.datalist import build_datalist

        if not args.labels:
            raise InputError(None, "give --labels DIR (segmentation) or --table CSV (image-level tasks)")
        build_datalist(
            images=args.images,
            labels=dict(args.labels),
            out=args.out,
            val_fraction=args.val_fraction,
            test_fraction=args.test_fraction,
            folds=args.folds,
            group_by=args.group_by,
            seed=args.seed,
            spacing=args.spacing,
            classes=args.classes,
            partial=args.partial,
        )
    elif args.command == "synth":
        from sonomuscle.data.phantoms import write_phantom_dataset

        write_phantom_dataset(
            task=args.task, out=args.out, n=args.n, seed=args.seed, pennation_range_deg=args.pennation
        )
    elif args.command == "evaluate":
        from sonomuscle.evaluation.batch import evaluate_folder, outcome
        from sonomuscle.evaluation.pairing import references_from_cli

        summary = evaluate_folder(
            pred=args.pred,
            ref=references_from_cli(args.ref),
            out=args.out,
            labels={k: v for given in args.classes for k, v in given.items()} if args.classes else None,
            measures=args.measures,
            workers=args.workers,
            images=args.images,
            spacing=args.spacing,
        )
        print(outcome(summary, args.out))
    elif args.command == "demo":
        from sonomuscle.demo import run_demo

        given = {k: v for k, v in (("n", args.n), ("epochs", args.epochs)) if v is not None}
        run_demo(out=args.out, seed=args.seed, **given)
    elif args.command == "measure":
        # measure runs the network beside its loading and measuring processes: OpenMP threads that wait
        # by sleeping instead of spinning leave those processes the cores (measured: 10 % more frames/s).
        # Read once, when torch loads, which is next.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        from sonomuscle.measure import measure

        measure(
            args.paths,
            args.out,
            spacing=args.spacing,
            depth=args.depth,
            bundle=args.bundle,
            overlays=not args.no_overlay,
            amp=not args.float32,
            mirror=not args.no_mirror,
            step=args.step,
            crop=args.crop,
            thickness_at=args.thickness_at,
            processes=args.processes,
        )
    elif args.command == "crossval":
        from sonomuscle.crossval import cross_validate

        cross_validate(args.bundle, args.datalist, args.out, **dict(args.set))
    elif args.command == "agreement":
        from sonomuscle.evaluation.agreement import agreement_with_observers, summary_lines

        result = agreement_with_observers(
            args.measurements,
            args.observers,
            args.out,
            maps=dict(args.map or ()),
            image_column=args.image_column,
            observer_column=args.observer_column,
            frame_column=args.frame_column,
            observer_spacing=args.observer_spacing,
            bins=dict(args.bins or ()),
            worst=args.worst,
            large_angle=args.large_angle,
            large_length=args.large_length,
        )
        print("\n".join(summary_lines(result, args.out)))
    elif args.command == "bundle":
        _run_bundle_command(args)
    elif args.command == "frames":
        from sonomuscle.data.frames import write_frames

        for path in args.paths:
            print(f"{path}: {len(write_frames(path, args.out, args.step))} frame(s) → {args.out}")
    elif args.command == "coco-labels":
        from sonomuscle.data.coco import coco_label_maps

        classes = coco_label_maps(args.annotations, args.out)
        print(f"label maps of {len(classes)} class(es) {classes} → {args.out} (classes.json beside them)")
    elif args.command in ("colour-labels", "color-labels"):
        from sonomuscle.data.colours import colour_label_maps, parse_colours

        classes, skipped = colour_label_maps(args.maps, parse_colours(args.colours), args.out)
        print(f"label maps of {len(classes)} class(es) {classes} → {args.out} ({len(skipped)} skipped)")
    elif args.command in ("label-env", "label-server"):
        _run_label_command(args)


def _table_datalist(args: argparse.Namespace) -> None:
    from sonomuscle.data.table import build_table_datalist

    if args.labels:
        raise InputError(args.table, "give --labels (masks) or --table (image-level tasks), not both")
    build_table_datalist(
        images=args.images,
        table=args.table,
        out=args.out,
        targets=args.target,
        class_column=args.class_column,
        class_names=args.class_names,
        subject_column=args.subject_column,
        image_column=args.image_column,
        roi_masks=args.roi_masks,
        box_columns=args.box_columns,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        folds=args.folds,
        leave_one_subject_out=args.leave_one_subject_out,
        seed=args.seed,
        spacing=args.spacing,
    )


def _run_label_command(args: argparse.Namespace) -> None:
    from sonomuscle import labelserver

    env = args.env or labelserver.DEFAULT_ENV
    if args.command == "label-env":
        labelserver.create_env(env)
        return
    bundles = [b.strip() for b in args.bundles.split(",") if b.strip()]
    code = labelserver.LabelServer(args.studies, bundles, args.host, args.port, env).serve()
    if code:
        raise InputError(None, f"MONAI Label stopped with exit status {code} (its log is above)")


def _run_bundle_command(args: argparse.Namespace) -> None:
    """``bundle list`` prints one line per bundle; ``bundle export`` prints how to run what it wrote."""
    from sonomuscle.bundles_export import describe_bundle, export_bundle
    from sonomuscle.workflows import bundle_dir, bundle_names

    if args.bundle_command == "list":
        for name in bundle_names():
            print(describe_bundle(bundle_dir(name)))
    else:
        dest = export_bundle(bundle_dir(args.name), args.dir)
        print(
            f"{args.name} written to {dest}; run it with: python -m monai.bundle run "
            f"--config_file {dest / 'configs' / 'inference.json'} --bundle_root {dest} "
            "--input_dir IMAGES --output_dir OUT"
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; a problem with the user's input or paths is one line and exit status 2."""
    quiet_library_notices()
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except Exception as err:
        line = None if os.environ.get("SONOMUSCLE_DEBUG") else user_error(err)
        if line is None:
            raise
        print(f"sonomuscle {args.command}: error: {line}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
