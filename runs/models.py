"""Execution and tracking (models arrive with the execution engine issue)."""
