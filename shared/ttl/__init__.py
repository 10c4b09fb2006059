"""Time-to-live of queued runs (§8): resolution lives with triggering, expiry lives here."""
