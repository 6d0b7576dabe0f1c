"""``python -m unifygeo_ros`` is the ``unifygeo`` command."""

import sys

from unifygeo_ros.cli import main

sys.exit(main())
