"""A simulated phone that speaks the device side of the ADB wire protocol on loopback."""
