"""Device simulators that speak our codecs from the device side over pseudo-terminals."""
