"""The `limits:` and `http.limits:` sections: what one user may cost the portal, so no user can slow, starve or
exhaust it for the others. Every refusal names its key here (`limits.searches_per_minute`, ...)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class LimitsConfig(BaseModel):
    """Budgets per user and per run (`limits:`). Sizes are bytes of JSON (code: UTF-8 bytes)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_code_bytes: int = Field(default=100_000, ge=1_000, description="size of one execute_code's code")
    max_code_items: int = Field(
        default=10_000, ge=100, description="commas and opening brackets in the code: bounds the cost of parsing it"
    )
    max_query_chars: int = Field(
        default=4_000,
        ge=10,
        description="length of one search_api query: a whole task pasted as the query fits (the longest public "
        "agent tasks we evaluate on are about 1,200 characters); search time grows linearly, 19 ms at 4,000",
    )
    max_argument_bytes: int = Field(default=1_000_000, ge=1_000, description="JSON size of one tool call's arguments")
    searches_per_minute: int = Field(default=300, ge=1, description="search_api calls per user per minute")
    runs_in_flight: int = Field(
        default=8, ge=1, description="execute_code runs of one user at once, waiting for approval or not (any protocol)"
    )
    calls_in_flight: int = Field(default=500, ge=1, description="tool calls of one user waiting at once")
    run_bytes_in_flight: int = Field(
        default=4_000_000, ge=10_000, description="argument + result bytes of one run's calls held at once"
    )
    user_bytes_in_flight: int = Field(
        default=8_000_000, ge=10_000, description="argument + result bytes of one user's calls held at once"
    )
    heavy_threads: int = Field(
        default=2, ge=1, le=16, description="threads for work whose cost grows with the input (big validations)"
    )


class HttpLimitsConfig(BaseModel):
    """What one connection may hold (`http.limits:`): slow clients are cut off, connections are capped."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    header_timeout: float = Field(default=10.0, gt=0, description="seconds to send a request's headers")
    body_timeout: float = Field(default=30.0, gt=0, description="seconds to send a request's body")
    max_connections: int = Field(default=512, ge=1, description="open connections at once")
    max_connections_per_client: int = Field(default=64, ge=1, description="open connections of one client address")
    max_body_bytes: int = Field(default=4_000_000, ge=10_000, description="size of one request body")
