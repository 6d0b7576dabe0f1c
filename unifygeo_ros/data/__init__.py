"""Data sets: the VIGOR layout (real downloads and synthetic exports)."""
