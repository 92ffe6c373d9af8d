"""Forms of the unsubscribe pages.

The POST of ``/u/<token>`` is exempt from the global CSRF check because RFC 8058
one-clicks carry no cookie and no token; the page's form (two hidden fields written by
``unsubscribe/page.html``: ``confirm=1`` and the CSRF token, without a form object, as
link scanners load that page far more often than anyone submits it) carries its own
token, which the view checks itself with ``validate_csrf``. The undo form is protected
by the global check like every other form.
"""

from __future__ import annotations

from wtforms import HiddenField

from app.i18n.forms import FlaskForm  # WTForms messages from our catalogues


class UndoForm(FlaskForm):
    """Re-subscribe what the page just unsubscribed: the CSRF token and the signed receipt
    of that change (:func:`app.unsubscribe.services.undo_receipt`)."""

    receipt = HiddenField()
