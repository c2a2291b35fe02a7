"""cron-scheduler: a single-server job scheduler with history, dependencies and supervised runs."""

__version__ = "0.1.0"
