"""The API's one error model: RFC 9457 problem details."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ApiProblem(Exception):
    """An answer other than success, as an RFC 9457 problem."""

    def __init__(self, status: int, title: str, detail: str, **extra):
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.extra = extra


class ProblemError(BaseModel):
    pointer: str = Field(description="JSON pointer (RFC 6901) to the member, in the body")
    detail: str
    parameter: str | None = Field(
        default=None, description="for a bad parameter: `path:NAME` or `query:NAME`")


class ProblemDetails(BaseModel):
    """RFC 9457 problem details (``application/problem+json``)."""

    model_config = ConfigDict(title="Problem")

    type: str
    title: str
    status: int = Field(ge=400, le=599)
    detail: str
    errors: list[ProblemError] | None = Field(
        default=None, description="every member that breaks a rule (always on a 422)")
    conflicting_external_id: str | None = Field(
        default=None, description="409: the subscriber that holds the address")
