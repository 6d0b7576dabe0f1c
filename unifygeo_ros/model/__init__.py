"""The UnifyGeo network."""
