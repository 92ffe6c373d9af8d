"""Errors: RFC 9457 problem details under /api, friendly pages elsewhere."""

from __future__ import annotations

from flask import Flask, jsonify, render_template, request
from flask_babel import gettext as _
from werkzeug.exceptions import HTTPException


def problem(status: int, title: str, detail: str, *, type_: str = "about:blank", **extra):
    body = {"type": type_, "title": title, "status": status, "detail": detail, **extra}
    response = jsonify(body)
    response.status_code = status
    response.mimetype = "application/problem+json"
    return response


def wants_json() -> bool:
    return request.path.startswith("/api/")


def init_app(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        if wants_json():
            response = problem(exc.code or 500, exc.name, exc.description or exc.name)
        else:
            response = app.make_response((
                render_template("errors/http.html", code=exc.code, name=exc.name,
                                message=_describe(exc)),
                exc.code or 500,
            ))
        for key, value in (exc.get_headers() or []):
            if key.lower() not in ("content-type", "content-length"):
                response.headers[key] = value
        return response


def _describe(exc: HTTPException) -> str:
    messages = {
        400: _("We could not understand that request."),
        403: _("You are not allowed to do that."),
        404: _("We could not find that page."),
        405: _("That action is not available here."),
        413: _("That request is too large."),
        429: _("Too many requests. Please wait a moment and try again."),
        503: _("We are briefly unavailable. Please try again in a minute."),
    }
    return messages.get(exc.code or 500, _("Something went wrong on our side."))
