"""A worker version arrives: its catalogue, its declarative schedules, its waiting runs."""
