"""Batches: many runs triggered in one call (``tasks.batchTrigger``, ``batch.trigger``)."""
