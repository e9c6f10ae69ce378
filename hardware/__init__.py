"""Device-specific data shipped with Quire: udev rules and scanner profiles."""
