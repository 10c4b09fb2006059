"""Runs: the model, the lifecycle state machine, the repository and the services."""
