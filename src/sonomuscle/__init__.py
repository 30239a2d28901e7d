"""sonomuscle: deep learning for muscle ultrasound on MONAI."""

__version__ = "0.3.0"
