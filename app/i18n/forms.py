"""Form errors in the page's language, from our own catalogues.

WTForms translates its built-in messages ("This field is required.", length limits,
invalid choices) from catalogues of its own, which have no Malay and patchy Arabic.
``FlaskForm`` here is Flask-WTF's form whose WTForms messages come from
``translations/`` first (every supported locale, one voice), WTForms' catalogue second.
"""

from __future__ import annotations

from functools import lru_cache

from babel import support
from flask_babel import get_locale, get_translations
from flask_wtf import FlaskForm as _FlaskWTFForm
from wtforms.i18n import messages_path


def N_(message: str) -> str:
    """Mark a message for extraction; it is translated where it is shown."""
    return message


def Nn_(singular: str, plural: str) -> tuple[str, str]:
    """Mark a plural message for extraction."""
    return singular, plural


# The WTForms messages our fields and validators can produce (DataRequired, Length,
# Select/Radio/SelectMultiple, Email, URL, Regexp, NumberRange, IntegerField).
MESSAGES = (
    N_("This field is required."),
    Nn_("Field must be at least %(min)d character long.",
        "Field must be at least %(min)d characters long."),
    Nn_("Field cannot be longer than %(max)d character.",
        "Field cannot be longer than %(max)d characters."),
    Nn_("Field must be exactly %(max)d character long.",
        "Field must be exactly %(max)d characters long."),
    N_("Field must be between %(min)d and %(max)d characters long."),
    N_("Not a valid choice."),
    N_("Invalid Choice: could not coerce."),
    N_("Invalid choice(s): one or more data inputs could not be coerced."),
    Nn_("'%(value)s' is not a valid choice for this field.",
        "'%(value)s' are not valid choices for this field."),
    N_("Invalid input."),
    N_("Invalid email address."),
    N_("Invalid URL."),
    N_("Not a valid integer value."),
    N_("Number must be at least %(min)s."),
    N_("Number must be at most %(max)s."),
    N_("Number must be between %(min)s and %(max)s."),
)


@lru_cache(maxsize=64)
def _wtforms_catalogue(locale: str) -> support.Translations:
    """WTForms' own catalogue for ``locale``, read once per process (Flask-WTF reads the
    file again for every request that builds a form)."""
    return support.Translations.load(messages_path(), [locale], domain="wtforms")


def wtforms_translations() -> support.Translations:
    return _wtforms_catalogue(str(get_locale()))


class FormTranslations:
    """The ``gettext``/``ngettext`` pair WTForms asks for (it formats the result itself)."""

    def gettext(self, string: str) -> str:
        translated = get_translations().ugettext(string)
        return translated if translated != string else wtforms_translations().ugettext(string)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        translated = get_translations().ungettext(singular, plural, n)
        if translated in (singular, plural):
            return wtforms_translations().ungettext(singular, plural, n)
        return translated


translations = FormTranslations()


class FlaskForm(_FlaskWTFForm):
    """Flask-WTF's form (CSRF included) with WTForms' messages from our catalogues."""

    class Meta:
        def get_translations(self, form):
            return translations
