"""Meal points and their devices: registry, last seen and online state."""
