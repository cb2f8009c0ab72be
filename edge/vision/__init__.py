"""Camera diner counting at the entrance; frames stay on the device, only counts leave it."""
