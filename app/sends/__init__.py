"""Sends: when each subscriber was last sent each topic on each channel (cadence)."""
