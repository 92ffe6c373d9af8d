"""Forms of the preference page. Topic fields are dynamic and read by the service;
the page writes its CSRF token itself (``csrf_token()``), without a form object."""

from __future__ import annotations

from app.i18n.forms import FlaskForm  # WTForms messages from our catalogues


class PreferencesForm(FlaskForm):
    """CSRF only: the topic fields depend on the subscriber's role."""


class FreshLinkForm(FlaskForm):
    """Ask for a fresh preference link by email."""
