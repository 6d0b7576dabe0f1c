"""Sequential localization along a drive: a particle filter over the map pose (ROS-free).

:class:`~.tracker.Tracker` is the one entry point: ``Tracker(TrackerConfig(...))`` then, per
odometry message ``tracker.predict(odometry_pose)`` and per camera frame
``tracker.update(evidence)``; ``tracker.estimate()`` gives the filtered pose, its
covariance and the state (initialising, tracking, lost). The mathematics are in
:mod:`.particles` (motion model, measurement model, resampling, estimate); the localizer's
output becomes :class:`~.evidence.Evidence` in :mod:`.evidence`.
"""

from .evidence import Evidence, EvidenceComponent, GnssEvidence
from .tracker import Anchor, TrackEstimate, Tracker, TrackerConfig, TrackState

__all__ = ["Anchor", "Evidence", "EvidenceComponent", "GnssEvidence", "TrackEstimate", "TrackState", "Tracker",
           "TrackerConfig"]
