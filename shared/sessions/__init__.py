"""Dashboard sessions: a secret key signed in once, then a cookie (docs/dashboard.md)."""
