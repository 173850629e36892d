"""Engine-layer business rules that do not belong to a single model or runtime object."""
