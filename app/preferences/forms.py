"""Forms of the preference page. Topic fields are dynamic and read by the service;
the form class carries CSRF protection and the fixed fields."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import StringField


class PreferencesForm(FlaskForm):
    """CSRF only: the topic fields depend on the subscriber's role."""


class FreshLinkForm(FlaskForm):
    """Ask for a fresh preference link by email."""


class AddressChangeForm(FlaskForm):
    """The new address; checked by the rules (``normalise_email``), not by WTForms."""

    email = StringField(_l("New email address"))
