"""What a run wrote while it executed: captured log lines, stored in batches."""
