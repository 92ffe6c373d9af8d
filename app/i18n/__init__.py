"""Flask-Babel wiring and locale resolution.

Order: ``?lang=`` > the link's locale > the subscriber's locale >
``Accept-Language`` (quality values honoured) > the default locale.
Unknown or malformed values are skipped, never an error.
"""

from __future__ import annotations

from babel import Locale, UnknownLocaleError
from flask import Flask, current_app, g, request
from flask_babel import Babel, get_locale

from app.config import ROOT

babel = Babel()


def supported() -> list[str]:
    return current_app.config["SUPPORTED_LOCALES"]


def pick(candidate: str | None) -> str | None:
    """``candidate`` if it names a supported locale (``ar-EG`` -> ``ar``), else None."""
    if not candidate or not isinstance(candidate, str) or len(candidate) > 35:
        return None
    value = candidate.strip().replace("-", "_")
    for option in (value, value.split("_")[0].lower()):
        if option in supported():
            return option
    return None


def resolve_locale() -> str:
    if request:
        chosen = pick(request.args.get("lang"))
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


def is_rtl(locale: str) -> bool:
    try:
        return Locale.parse(locale).character_order == "right-to-left"
    except (UnknownLocaleError, ValueError):
        return locale in current_app.config["RTL_LOCALES"]


def language_name(locale: str) -> str:
    try:
        return Locale.parse(locale).get_display_name(locale).capitalize()
    except (UnknownLocaleError, ValueError):
        return locale


def init_app(app: Flask) -> None:
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(ROOT / "translations"))
    app.config.setdefault("BABEL_DEFAULT_LOCALE", app.config["DEFAULT_LOCALE"])
    babel.init_app(app, locale_selector=resolve_locale)

    @app.context_processor
    def _i18n_context():
        locale = str(get_locale() or app.config["DEFAULT_LOCALE"])
        return {
            "current_locale": locale,
            "text_direction": "rtl" if is_rtl(locale) else "ltr",
            "language_options": [(code, language_name(code)) for code in supported()],
        }
