"""The endpoint's error shape: a stable machine `error` code and a human `detail`, never a trace."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import JSONResponse


class ApiError(Exception):
    """Raised anywhere below the route; the app turns it into a JSON response."""

    def __init__(
        self, status: int, code: str, detail: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        return JSONResponse(
            {"error": self.code, "detail": self.detail},
            status_code=self.status,
            headers=self.headers,
        )


def bad_request(code: str, detail: str) -> ApiError:
    return ApiError(400, code, detail)
