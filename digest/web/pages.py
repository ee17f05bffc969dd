"""The web pages' own Jinja environment (``templates/pages``, autoescaped) and the pages every route
shares: a rendered template, and the "this link does not work" page."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from fastapi.responses import HTMLResponse
from jinja2 import Environment, StrictUndefined

from digest.render import template_loader
from digest.signing import BadToken


@lru_cache(maxsize=1)
def environment() -> Environment:
    return Environment(
        loader=template_loader("pages"), autoescape=True, undefined=StrictUndefined, trim_blocks=True,
        lstrip_blocks=True, auto_reload=False,
    )


def page(template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    ctx.setdefault("link", None)
    ctx.setdefault("link_text", None)
    return HTMLResponse(environment().get_template(template).render(**ctx), status_code=status)


def message(status: int, title: str, heading: str, text: str, link: str | None = None,
            link_text: str | None = None) -> HTMLResponse:
    return page("message.html.j2", status, title=title, heading=heading, message=text, link=link,
                link_text=link_text)


def bad_link(e: BadToken, expired: str = "This link has expired. Sign up again to get a new one.") -> HTMLResponse:
    text = expired if e.expired else "This link is invalid or incomplete. Please use the link exactly as it was mailed to you."
    return message(400, "Invalid link", "This link does not work", text, "/", "Go to the sign-up page")
