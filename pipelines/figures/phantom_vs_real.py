"""Side-by-side figure: architecture2d phantoms (with their mask outlines) above real longitudinal B-mode images.

Run from the repository root: ``python pipelines/figures/phantom_vs_real.py [--real DIR] [--out PNG]``.
The real images (DL_Track, ../shared/data) are only shown downscaled; none is copied into the repository.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from sonomuscle.data.phantoms.architecture2d import make_phantom
from sonomuscle.io import atomic_write_with

REPO = Path(__file__).resolve().parents[2]
REAL = REPO.parent / "shared" / "data" / "dl_track_longitudinal" / "aponeurosis" / "images"
OUT = REPO / "bundles" / "muscle_architecture_2d" / "docs" / "phantom_vs_real.png"
PANEL_PX = 360  # longest side of each downscaled real image


def render(real_dir: Path, out: Path, n: int = 3, seed: int = 0) -> Path:
    reals = sorted(real_dir.glob("*.png"))
    if len(reals) < n:
        raise SystemExit(f"{real_dir}: need {n} real images, found {len(reals)}")
    picks = [reals[i] for i in np.linspace(0, len(reals) - 1, n).astype(int)]
    fig, axes = plt.subplots(2, n, figsize=(3.4 * n, 6.9), dpi=100)
    for col in range(n):
        phantom = make_phantom(np.random.default_rng([seed, col]))
        ax = axes[0, col]
        ax.imshow(phantom.image.T, cmap="gray", vmin=0, vmax=1)
        ax.contour(phantom.aponeurosis.T, levels=[0.5], colors="yellow", linewidths=0.6)
        ax.contour(phantom.fascicle.T, levels=[0.5], colors="cyan", linewidths=0.6)
        t = phantom.truth
        ax.set_title(
            f"phantom: MT {t['thickness_mm']:.1f} mm, PA {t['pennation_angle_deg']:.0f}°, "
            f"FL {t['fascicle_length_mm']:.0f} mm",
            fontsize=8,
        )
        real = Image.open(picks[col]).convert("L")
        real.thumbnail((PANEL_PX, PANEL_PX))
        axes[1, col].imshow(np.asarray(real), cmap="gray", vmin=0, vmax=255)
        axes[1, col].set_title(f"real (DL_Track): {picks[col].name}", fontsize=8)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.suptitle(
        "architecture2d phantoms (yellow: aponeuroses, cyan: annotated fascicles) vs real images", fontsize=10
    )
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    # a 128-colour palette keeps a greyscale figure small
    figure = Image.open(buffer).convert("RGB").quantize(128)
    return atomic_write_with(out, lambda p: figure.save(p, format="PNG", optimize=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", type=Path, default=REAL, help="folder of real longitudinal PNG images")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    print(render(args.real, args.out))


if __name__ == "__main__":
    main()
