"""The public form posts a crowd sends (sign-up, hosted and embedded, and confirm), dispatched without the
framework's router.

FastAPI's routing and dependency resolution cost about a third of such a request (bench/web.py, py-spy --gil):
matching the path against every route of the app, the admin's included, then solving dependencies. These routes
need none of it: their handlers take the request and one path parameter, and one of them the CSRF check. So this
middleware, the innermost of the app's own (inside the security headers, the body limit and the CSRF cookie, which
it keeps), sends those posts straight to the same handler functions the routes declare; everything else goes on to
the router. `test_fastpost` checks that this table and the routes agree, on the CSRF check too.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from newsletter.web import embed, public
from newsletter.web.csrf import verify_csrf


@dataclass(frozen=True)
class FastPost:
    path: str  # as the route declares it, with one {parameter}
    handler: Callable[[Request, str], Awaitable[Response]]
    csrf: bool

    @property
    def pattern(self) -> re.Pattern[str]:
        return re.compile("^" + re.sub(r"\{\w+\}", "([^/]+)", self.path) + "$")


ROUTES = [
    FastPost("/lists/{slug}/embed", embed.embedded_signup, csrf=False),
    FastPost("/lists/{slug}/subscribe", public.subscribe, csrf=True),
    FastPost("/confirm/{token}", public.confirm, csrf=True),
]
_MATCHERS = [(route.pattern, route) for route in ROUTES]


class FastPostPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            for pattern, route in _MATCHERS:
                found = pattern.match(scope["path"])
                if found:
                    request = Request(scope, receive, send)
                    await (await _answer(request, route, found.group(1)))(scope, receive, send)
                    return
        await self.app(scope, receive, send)


async def _answer(request: Request, route: FastPost, parameter: str) -> Response:
    """What the route would answer, including the app's answers for a failed CSRF check (403, see app.http_error)
    and for a client gone before its body arrived (400)."""
    try:
        if route.csrf:
            await verify_csrf(request)
        return await route.handler(request, parameter)
    except HTTPException as exc:
        return Response(str(exc.detail), status_code=exc.status_code, headers=exc.headers)
    except ClientDisconnect:
        return Response(status_code=400)
