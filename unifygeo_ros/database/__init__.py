"""The tiled aerial database: ``unifygeo build-db`` (:mod:`.build`), opened with :mod:`.store`.

Orientation and the meridian convergence
----------------------------------------
The model was trained on true-north-up tiles with north-aligned panoramas, but what it
learned is the relation *tile up = the panorama's centre column* (training also rotates
pairs by multiples of 90 degrees together), not true north as such. A database is cut
grid-north-up in its projected map frame, and a panorama with a known heading is turned to
face *grid* north, so the relation holds exactly, without resampling tiles by the
convergence (< ~3 deg in UTM; up to tens of degrees in some conic projections). Every yaw
the localizer reads or publishes is therefore ENU in the map frame (relative to grid
east), as REP-103 asks of a map frame. The convergence at each tile centre (true bearing
minus grid bearing) is in the tile table for whoever needs true bearings.
"""
