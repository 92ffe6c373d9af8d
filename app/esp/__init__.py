"""Bounces, complaints and unsubscribes reported by email service providers (docs/esp.md)."""
