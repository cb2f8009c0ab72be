"""Diner check-ins (taps and deliveries) per meal point and day."""
