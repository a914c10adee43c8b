"""`StrictModel`: the base of every request schema."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Base of every request schema: JSON types as OpenAI documents them, finite numbers only.

    Floats accept integers (`"temperature": 1`); nothing else is coerced.
    """

    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="ignore")
