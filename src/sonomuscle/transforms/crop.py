"""Where the ultrasound picture is inside a screen capture, as a foreground for MONAI's ``CropForegroundd``.

Exported frames often put a small B-mode picture inside a wide black canvas (and scale ticks, text or a
depth bar beside it). Resizing the whole canvas to the network size wastes most of the input on black and
thins every aponeurosis; cropping to the picture first keeps its detail. A row or column belongs to the
picture when enough of its pixels are lit, so isolated ticks and short labels do not widen the crop.
Use it as ``CropForegroundd(..., select_fn=ultrasound_area)``; ``Invertd`` pads outputs back.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.config import NdarrayOrTensor

LIT = 0.03  # grey level (image scaled to [0, 1]) above which a pixel shows tissue rather than canvas
MIN_LIT_FRACTION = 0.05  # of a row or column, for it to be part of the picture


def ultrasound_area(
    image: NdarrayOrTensor, lit: float = LIT, min_lit_fraction: float = MIN_LIT_FRACTION
) -> NdarrayOrTensor:
    """Boolean mask, the shape of ``image`` (channel first), of the box spanned by well-lit rows and columns.

    Every spatial axis is treated alike: an index along it is kept when at least ``min_lit_fraction`` of
    the pixels in its slice are above ``lit``. An image with no such slice is kept whole.
    """
    pixels = torch.as_tensor(image)
    lit_pixels = (pixels.amax(dim=0) > lit).float()
    spatial = lit_pixels.ndim
    keep = torch.ones_like(lit_pixels, dtype=torch.bool)
    for axis in range(spatial):
        along = lit_pixels.mean(dim=tuple(a for a in range(spatial) if a != axis)) >= min_lit_fraction
        if not bool(along.any()):
            keep = torch.ones_like(keep)
            break
        shape = [1] * spatial
        shape[axis] = -1
        keep = keep & along.view(shape)
    mask = keep[None].expand(pixels.shape)
    return mask.numpy() if isinstance(image, np.ndarray) else mask
