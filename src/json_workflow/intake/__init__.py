"""Intake: what is in the hot folder, when a file is complete, and claiming it."""
