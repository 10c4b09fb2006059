"""Projects, their environments, API keys and registered worker versions."""
