"""The console as an ASGI application: routes of every role, static files, security headers."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from ..archive import Archive
from .base import Console, make_templates
from .pages import admin, archivist, auditor, auth, inspector, officer, reader, statistics

STATIC = Path(__file__).parent / "static"
# Scripts and styles only from the archive itself, nothing inline, no frames, no plug-ins.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


class SecurityHeaders:
    """Every response: a strict CSP, no sniffing, no referrer, no framing; no caching but of static files."""

    def __init__(self, app, secure: bool):
        self.app, self.secure = app, secure

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        static = scope["path"].startswith("/static/")

        async def with_headers(message):
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control"]
                headers += [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
                            (b"referrer-policy", b"no-referrer"), (b"x-frame-options", b"DENY"),
                            (b"cross-origin-opener-policy", b"same-origin"),
                            (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
                            (b"cache-control", b"private, max-age=3600" if static else b"no-store")]
                if self.secure:
                    headers.append((b"strict-transport-security", b"max-age=31536000"))
                message = {**message, "headers": headers}
            await send(message)

        return await self.app(scope, receive, with_headers)


def create_app(archive: Archive, *, secure: bool, workers: int = 8) -> Starlette:
    """The console over ``archive``; ``secure``: served over HTTPS (Secure cookies, HSTS)."""
    routes = [route for module in (auth, reader, officer, auditor, archivist, inspector, admin, statistics)
              for route in module.ROUTES]
    app = Starlette(routes=[*routes, Mount("/static", StaticFiles(directory=STATIC), name="static")])
    app.state.console = Console(archive, ThreadPoolExecutor(workers, thread_name_prefix="quire-web"),
                                make_templates(), secure)
    app.add_middleware(SecurityHeaders, secure=secure)
    return app
