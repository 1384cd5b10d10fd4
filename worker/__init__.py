"""Sending: the per-recipient ledger, the campaign engine and the Celery tasks that drive it."""
