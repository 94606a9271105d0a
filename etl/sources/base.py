"""The strict base of the connector sections in this package (the same rules as etl/config/models.py's
models, kept here so that etl/config/models.py can import the sections without a cycle)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict

from etl.config.durations import parse_duration

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class Section(BaseModel):
    """Unknown keys are errors; values are not coerced to text."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
