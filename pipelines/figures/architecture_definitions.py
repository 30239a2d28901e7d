"""Draw docs/architecture_measures.png: what each muscle-architecture column of ``sonomuscle measure`` is.

    python pipelines/figures/architecture_definitions.py

The geometry is made up (converging aponeuroses, one fascicle); the lines are computed with the measures'
own ``Line`` so the picture shows what the code measures.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Arc

from sonomuscle.measures.architecture import Line

OUT = Path(__file__).resolve().parents[2] / "docs" / "architecture_measures.png"
WIDTH = 60.0  # mm
SUPERFICIAL = Line(8.0, 0.06)  # L_s: deep edge of the superficial aponeurosis, y = a + b·x (depth down)
DEEP = Line(34.0, -0.08)  # L_d: superficial edge of the deep aponeurosis
AT = 0.15  # --thickness-at 0.15


def main() -> Path:
    fig, ax = plt.subplots(figsize=(9, 5.2))
    xs = np.array([0.0, WIDTH])
    for line, name, offset in (
        (SUPERFICIAL, "$L_s$ superficial aponeurosis", -2.5),
        (DEEP, "$L_d$ deep aponeurosis", 2.5),
    ):
        ax.fill_between(xs, line.y(xs), line.y(xs) + offset, color="0.85")
        ax.plot(xs, line.y(xs), color="goldenrod", linewidth=2)
        ax.text(WIDTH + 0.5, line.y(WIDTH), name, va="center", fontsize=9)

    # one fascicle, rising to the left from L_d at 30° to L_d
    theta = math.radians(30.0)
    direction = np.array([-math.cos(theta - math.atan(DEEP.b)), -math.sin(theta - math.atan(DEEP.b))])
    start = np.array([54.0, DEEP.y(54.0)])
    end = start + direction * SUPERFICIAL.hit(start, direction)
    ax.plot(*np.stack([start, end]).T, color="tab:cyan", linewidth=2.5)
    ax.text(*(start + end) / 2 + np.array([1.0, 0.0]), "fascicle_length", color="tab:blue", fontsize=9)
    _angle(ax, start, DEEP.direction * -1, direction, "pennation_angle (to $L_d$)", 7.0, (6.0, 7.0))
    _angle(
        ax,
        end,
        SUPERFICIAL.direction,
        -direction,
        "pennation_angle_superficial (to $L_s$)",
        7.0,
        (12.0, -5.0),
    )

    centre = WIDTH / 2
    normal = np.array([DEEP.direction[1], -DEEP.direction[0]])
    foot = np.array([centre, DEEP.y(centre)])
    top = foot + normal * SUPERFICIAL.hit(foot, normal)
    ax.annotate("", top, foot, arrowprops={"arrowstyle": "<->", "color": "tab:red", "linewidth": 1.5})
    ax.text(
        top[0] + 0.8, (top[1] + foot[1]) / 2 - 4, "thickness\n(⊥ $L_d$, centre)", color="tab:red", fontsize=9
    )
    for x, label in (
        (centre, "thickness_vertical\n(centre)"),
        (AT * WIDTH, "thickness_vertical_at\n(--thickness-at 0.15)"),
    ):
        ax.annotate(
            "", (x, SUPERFICIAL.y(x)), (x, DEEP.y(x)), arrowprops={"arrowstyle": "<->", "color": "tab:purple"}
        )
        ax.text(
            x - 0.6, (SUPERFICIAL.y(x) + DEEP.y(x)) / 2, label, color="tab:purple", fontsize=9, ha="right"
        )
    ax.axvline(centre, color="0.6", linestyle=":", linewidth=1)
    ax.text(centre, 46, "image centre", ha="center", fontsize=8, color="0.4")
    ax.set_xlim(-12, WIDTH + 22)
    ax.set_ylim(48, 0)
    ax.set_aspect("equal")
    ax.set_xlabel("lateral x (mm), left edge of the picture at 0")
    ax.set_ylabel("depth y (mm)")
    ax.set_title(
        "What sonomuscle measure reports (thickness_mean: ⊥ thickness averaged over the shared width)",
        fontsize=10,
    )
    fig.tight_layout()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=110)
    return OUT


def _angle(
    ax,
    vertex: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    label: str,
    radius: float,
    offset: tuple[float, float],
) -> None:
    """An arc from direction ``u`` to ``v`` (image axes: depth grows downwards), its label at ``offset`` (mm)
    from the vertex."""
    a, b = (math.degrees(math.atan2(w[1], w[0])) for w in (u, v))
    low, high = sorted((a, b))
    if high - low > 180:
        low, high = high, low + 360
    ax.add_patch(
        Arc(vertex, 2 * radius, 2 * radius, theta1=low, theta2=high, color="tab:green", linewidth=1.5)
    )
    ax.text(*(vertex + np.asarray(offset)), label, color="tab:green", fontsize=9, ha="center", va="center")


if __name__ == "__main__":
    print(main())
