"""Geometry from masks in physical units: muscle architecture, area, volume, echo intensity, local thickness."""

from sonomuscle.measures.architecture import ArchitectureResult, measure_architecture
from sonomuscle.measures.area import area, echo_intensity, volume
from sonomuscle.measures.thickness import local_thickness, thickness_summary

__all__ = [
    "ArchitectureResult",
    "area",
    "echo_intensity",
    "local_thickness",
    "measure_architecture",
    "thickness_summary",
    "volume",
]
