"""Delivery: a claimed file's copies written, flushed, published, and what a crash left finished."""
