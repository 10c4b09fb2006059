"""Dashboard sessions: a secret key signed in once, then a cookie (SPEC §16)."""
