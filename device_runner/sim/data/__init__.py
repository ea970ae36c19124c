"""Reference outputs the simulated phone replays (see shared/device-outputs/README.md for provenance)."""
