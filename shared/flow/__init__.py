"""Flow control: concurrency limits, queues (pause), priority and admission.

See docs/concurrency.md for the model and why admission is built the way it is.
"""
