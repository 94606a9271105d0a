"""Running jobs unattended: the scheduler daemon, job health, metrics, logs, progress."""
