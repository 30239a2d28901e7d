"""MONAI Label integration: serve sonomuscle's segmentation bundles to 3D Slicer and OHIF for annotation,
correction, retraining and active learning.

The modules that import ``monailabel`` (``app``, ``infer``, ``train``, ``strategy``) run in MONAI Label's
own environment (``sonomuscle label-env``): its pins (numpy < 2 through pydicom-seg, pydicom 2.4, a torchvision)
clash with the main one. ``bundles`` and ``uncertainty`` import no MONAI Label and are tested in both.
"""
