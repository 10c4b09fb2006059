from tests.support.timers import parked_timers, timer_outcomes

__all__ = ["parked_timers", "timer_outcomes"]
