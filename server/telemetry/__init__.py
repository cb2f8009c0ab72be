"""Sensor readings: latest values per device and channel, and series rolled up in time buckets."""
