"""Prefect flows: one per creation path (plus the periodic one in a later issue)."""
