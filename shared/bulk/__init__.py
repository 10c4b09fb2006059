"""Bulk actions: replay, cancel or reschedule many runs, chosen by ids or by a filter."""
