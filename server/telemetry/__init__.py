"""Sensor readings: latest values per device and channel."""
