"""The ROS-free localizer: ``Localizer.open(db).localize(image, ...)`` -> LocalizationResult.

The types (``Camera``, ``PositionPrior``, ``HeadingPrior``, ``Candidate``,
``LocalizationResult``, ``LocalizationError``) live in :mod:`unifygeo_ros.types` and import nothing heavy.
"""

from ..types import (
    Camera,
    Candidate,
    DatabaseError,
    HeadingPrior,
    LocalizationError,
    LocalizationResult,
    PositionPrior,
)


def __getattr__(name):
    if name == "Localizer":
        from .localizer import Localizer

        return Localizer
    raise AttributeError(name)


__all__ = ["Camera", "Candidate", "DatabaseError", "HeadingPrior", "LocalizationError", "LocalizationResult",
           "Localizer", "PositionPrior"]
