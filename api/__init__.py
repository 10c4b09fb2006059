"""The REST API: a thin FastAPI adapter over ``shared``."""
