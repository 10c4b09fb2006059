from tests.support.schedules import clean_schedules, scheduler

__all__ = ["clean_schedules", "scheduler"]
