"""Forms of the unsubscribe pages.

The POST of ``/u/<token>`` is exempt from the global CSRF check because RFC 8058
one-clicks carry no cookie and no token; the browser form below carries its own
token, which the view checks itself with ``validate_csrf``. The undo form is
protected by the global check like every other form.
"""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import HiddenField


class UnsubscribeForm(FlaskForm):
    """The page's one button: a hidden ``confirm=1`` and the CSRF token."""

    confirm = HiddenField(default="1")


class UndoForm(FlaskForm):
    """Re-subscribe what the page just unsubscribed: the CSRF token and the signed receipt
    of that change (:func:`app.unsubscribe.services.undo_receipt`)."""

    receipt = HiddenField()
