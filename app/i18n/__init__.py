"""Flask-Babel wiring and locale resolution.

Order: ``?lang=`` (or the ``lang`` field a page's form carries back, so a
language picked with the switcher survives the save) > the link's locale >
the subscriber's locale > ``Accept-Language`` (quality values honoured) >
the default locale. Unknown or malformed values are skipped, never an error.
"""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import urlencode

from babel import Locale, UnknownLocaleError
from flask import Flask, current_app, g, request
from flask_babel import Babel, get_locale, get_translations
from jinja2 import pass_context
from werkzeug.exceptions import HTTPException

from app.config import ROOT

babel = Babel()

# A BCP 47-like tag (``ar``, ``ar-EG``, ``zh_Hant_TW``); anything else is ignored.
LANGUAGE_TAG = re.compile(r"[A-Za-z]{2,8}(?:[-_][A-Za-z0-9]{1,8}){0,4}")


def supported() -> list[str]:
    return current_app.config["SUPPORTED_LOCALES"]


def pick(candidate: str | None) -> str | None:
    """``candidate`` if it names a supported locale (``ar-EG`` -> ``ar``), else None."""
    if not isinstance(candidate, str) or not LANGUAGE_TAG.fullmatch(candidate.strip()):
        return None
    value = candidate.strip().replace("-", "_")
    for option in (value, value.split("_")[0].lower()):
        if option in supported():
            return option
    return None


FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _form_lang() -> str | None:
    """The ``lang`` field of a posted HTML form (never parses any other body)."""
    if request.method != "POST" or request.mimetype not in FORM_TYPES:
        return None
    try:
        return request.form.get("lang")
    except HTTPException:  # e.g. a body over MAX_CONTENT_LENGTH: that error wins
        return None


def resolve_locale() -> str:
    if request:
        for candidate in (request.args.get("lang"), _form_lang()):
            chosen = pick(candidate)
            if chosen:
                return chosen
    for key in ("link_locale", "subscriber_locale"):
        chosen = pick(g.get(key))
        if chosen:
            return chosen
    if request:
        best = request.accept_languages.best_match(supported())
        if best:
            return best
        for lang, _quality in request.accept_languages:
            chosen = pick(lang)
            if chosen:
                return chosen
    return current_app.config["DEFAULT_LOCALE"]


def picked_locale() -> str | None:
    """The language the visitor picked on the page (the switcher's ``?lang=``, carried back
    by the page's form), if any: the one choice a save may store as the subscriber's."""
    if not request:
        return None
    return pick(request.args.get("lang")) or pick(_form_lang())


@lru_cache(maxsize=256)
def _character_order(locale: str) -> str | None:
    try:
        return Locale.parse(locale).character_order
    except (UnknownLocaleError, ValueError):
        return None


def is_rtl(locale: str) -> bool:
    order = _character_order(locale)
    if order is None:
        return locale in current_app.config["RTL_LOCALES"]
    return order == "right-to-left"


@lru_cache(maxsize=256)
def language_name(locale: str) -> str:
    """The language's name in itself (Babel's data: parsed once per process)."""
    try:
        return Locale.parse(locale).get_display_name(locale).capitalize()
    except (UnknownLocaleError, ValueError):
        return locale


def switch_url(locale: str) -> str:
    """This page in ``locale``: same path, other query parameters kept, ``lang`` replaced."""
    params = [(key, value) for key, value in request.args.items(multi=True) if key != "lang"]
    return f"{request.path}?{urlencode([*params, ('lang', locale)])}"


# Templates translate with the catalogue their render context carries (``_translations``,
# looked up once per render); Flask-Babel's own callables look it up again for every
# string, through the request and application contexts. Without it (a macro imported
# without context), they ask Flask-Babel.
def _translations(context):
    return context.get("_translations") or get_translations()


@pass_context
def _template_gettext(context, string: str) -> str:
    return _translations(context).ugettext(string)


@pass_context
def _template_ngettext(context, singular: str, plural: str, n: int) -> str:
    return _translations(context).ungettext(singular, plural, n)


def init_app(app: Flask) -> None:
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(ROOT / "translations"))
    app.config.setdefault("BABEL_DEFAULT_LOCALE", app.config["DEFAULT_LOCALE"])
    babel.init_app(app, locale_selector=resolve_locale)
    app.jinja_env.install_gettext_callables(_template_gettext, _template_ngettext,
                                            newstyle=True)

    @app.context_processor
    def _i18n_context():
        locale = str(get_locale() or app.config["DEFAULT_LOCALE"])
        return {
            "_translations": get_translations(),
            "current_locale": locale,
            "picked_locale": picked_locale(),
            "text_direction": "rtl" if is_rtl(locale) else "ltr",
            "language_options": [(code, language_name(code)) for code in supported()],
            "switch_url": switch_url,
        }
