"""Data in: readers with ultrasound calibration (:mod:`.readers`), datalists (:mod:`.datalist`), phantoms.

Nothing is imported here, so ``import sonomuscle.data.phantoms`` does not pay for MONAI's readers.
"""
