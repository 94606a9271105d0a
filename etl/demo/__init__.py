"""The demo: a synthetic plant database (plant) and the project that reads it (project). Only
the ``etl demo`` command and the tests import it; no job run does."""
