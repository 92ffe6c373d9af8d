"""The hot path skips the extensions' per-request hooks it has no use for.

RFC 8058 one-click (``POST /u/<token>``) comes in bursts from mailbox providers. Its view
counts its one rate limit itself (:func:`app.limits.check_limit`) and checks the CSRF token
of the page's own form itself (it is ``csrf.exempt``), so Flask-Limiter's hooks (which
resolve every limit of every request, about 50 us) and Flask-WTF's have nothing to do there.
Every other endpoint keeps them unchanged.
"""

from __future__ import annotations

from flask import Flask, request
from flask_limiter import Limiter
from flask_wtf.csrf import CSRFProtect

SELF_CHECKED = frozenset({"unsubscribe.confirm"})
# Flask-WTF registers its check as a closure of CSRFProtect.init_app.
_CSRF_HOOK = "CSRFProtect.init_app.<locals>.csrf_protect"


def init_app(app: Flask, limiter: Limiter, csrf: CSRFProtect) -> None:
    """Wrap the extensions' hooks (none are registered when one is disabled by config)."""
    ours = {
        limiter._check_request_limit,
        limiter._Limiter__release_context,
    }
    for hooks in (app.before_request_funcs[None], app.after_request_funcs[None],
                  app.teardown_request_funcs[None]):
        for index, hook in enumerate(hooks):
            if (hook in ours
                    or getattr(hook, "func", None) is Limiter._Limiter__inject_headers
                    or getattr(hook, "__qualname__", "") == _CSRF_HOOK):
                hooks[index] = _unless_self_checked(hook)


def _unless_self_checked(hook):
    def skip_when_self_checked(*response_or_error):
        if request.endpoint in SELF_CHECKED:
            return response_or_error[0] if response_or_error else None
        return hook(*response_or_error)

    return skip_when_self_checked
