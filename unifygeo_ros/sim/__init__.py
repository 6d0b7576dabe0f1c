"""Synthetic cross-view world: procedural city, aerial and street-level renders, exports."""
