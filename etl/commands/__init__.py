"""The commands beyond a plain run: check, discover, preview, report, demo, init.
They return data and text; etl/cli.py prints."""
