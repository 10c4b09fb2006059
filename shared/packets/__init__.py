"""Packets: payloads the official SDK offloads before triggering (>= 128 KiB), kept in a
packet store (Postgres by default, an S3-compatible bucket when configured) and reached
through HMAC-signed, expiring URLs served by the API itself."""
