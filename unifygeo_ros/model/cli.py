"""Subcommands of this subsystem (see unifygeo_ros/cli.py for the pattern)."""


def register(sub, bench_sub) -> None:
    """Add this subsystem's subcommands to ``sub`` and its benchmarks to ``bench_sub``."""
