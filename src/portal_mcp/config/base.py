"""The base of every portal.yaml model: unknown keys are errors (with a did-you-mean), values are frozen."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
