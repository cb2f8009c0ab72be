"""Gas and electrical safety: events per point, the current state per point and device, thresholds."""
