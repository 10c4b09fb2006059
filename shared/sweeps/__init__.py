"""What every beat sweep shares: a guard so concurrent duplicates of a sweep step aside."""
