"""Camera counts on the server: entries per meal against card check-ins, occupancy, camera health."""
