"""Logging, metrics and health: how Ordo tells people what it is doing."""
