"""Configuration: the project's models and loader, YAML with line numbers, durations,
cron expressions and output locations. Imports only the bottom helpers."""
