"""The one reader of a JSON request body for the admin API and its parts (dashboard, alerting)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from peerbackup.errors import UsageError


async def json_body(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object, or a UsageError (400) saying what is wrong with it."""
    try:
        obj = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise UsageError("the request body is not JSON") from None
    if not isinstance(obj, dict):
        raise UsageError("the request body must be a JSON object")
    return obj
