"""Forms of the preference page. Topic fields are dynamic and read by the service;
the page writes its CSRF token itself (``csrf_token()``), without a form object."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from wtforms import StringField

from app.i18n.forms import FlaskForm  # WTForms messages from our catalogues


class PreferencesForm(FlaskForm):
    """CSRF only: the topic fields depend on the subscriber's role."""


class FreshLinkForm(FlaskForm):
    """Ask for a fresh preference link by email."""


class AddressChangeForm(FlaskForm):
    """The new address; checked by the rules (``normalise_email``), not by WTForms."""

    email = StringField(_l("New email address"))
