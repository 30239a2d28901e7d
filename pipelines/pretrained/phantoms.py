"""Train a bundle's shipped, phantom-trained weights with the bundle's defaults, score them, publish them.

    python pipelines/pretrained/phantoms.py bladder_wall_3d --n 20 --max_epochs 40
    python pipelines/pretrained/phantoms.py ciliary_muscle_3d --n 20 --max_epochs 40
    python pipelines/pretrained/phantoms.py muscle_csa_2d --n 100 --max_epochs 100
    python pipelines/pretrained/phantoms.py muscle_classification_2d --n 400 --max_epochs 80
    python pipelines/pretrained/phantoms.py muscle_state_regression_2d --n 600 --max_epochs 120

Makes ``--n`` phantoms (``sonomuscle synth``; the phantom split holds out a test part), trains through
``python -m monai.bundle run`` with the bundle's own ``train.json``, runs ``evaluate.json`` on the held-out
phantoms, and with ``--publish`` writes ``models/model.pt``, ``models/model.ts`` and ``large_files.yml``
into the bundle. No real data of these tasks exist here: these weights are phantom-trained and say so in the
docs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from sonomuscle.data.phantoms import write_phantom_dataset
from sonomuscle.weights import publish_weights
from sonomuscle.workflows import bundle_dir, run_bundle

PHANTOM_TASK = {
    "bladder_wall_3d": "bladder3d",
    "ciliary_muscle_3d": "ciliary3d",
    "muscle_csa_2d": "csa2d",
    "muscle_classification_2d": "classify2d",
    "muscle_state_regression_2d": "regress2d",
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", choices=sorted(PHANTOM_TASK))
    parser.add_argument("--n", type=int, default=20, help="number of phantoms")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max_epochs", type=int, default=40)
    parser.add_argument("--out", type=Path, default=None, help="work folder (default runs/pretrain_<bundle>)")
    parser.add_argument("--publish", action="store_true", help="copy the weights into the bundle")
    args = parser.parse_args(argv)
    out = args.out or Path("runs") / f"pretrain_{args.bundle}"

    datalist = write_phantom_dataset(PHANTOM_TASK[args.bundle], out / "phantoms", args.n, args.seed)
    common = {"datalist": datalist, "model_path": out / "model.pt"}
    start = time.monotonic()
    run_bundle(args.bundle, "train", **common, output_dir=out / "train", max_epochs=args.max_epochs)
    print(f"training took {time.monotonic() - start:.0f} s", flush=True)
    run_bundle(args.bundle, ["train", "evaluate"], **common, output_dir=out / "test")
    print(json.dumps(json.loads((out / "test" / "evaluation" / "summary.json").read_text()), indent=1))
    if args.publish:
        for path in publish_weights(out / "model.pt", bundle_dir(args.bundle)):
            print(f"published {path}")


if __name__ == "__main__":
    main()
