"""Time-to-live of queued runs: which TTL a run gets (policy), and its expiry (service)."""
