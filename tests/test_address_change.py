"""Change of address from the preference page, end to end: the page, the mail outbox and
its worker against a real SMTP server (aiosmtpd), the confirmation page, the event and its
webhook to a real receiver, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import select, update

from app.db import get_db, utcnow, write_session
from app.events.models import Event
from app.mail.worker import MailWorker
from app.subscribers.models import AddressChange, Subscriber, Suppression
from app.subscribers.services import Context, email_hash, erase
from app.topics.models import Topic
from app.webhooks.services import WebhookSettings, create_endpoint
from app.webhooks.worker import Worker
from tests.conftest import csrf_from
from tests.webhook_receiver import Receiver

CONFIRM_LINK = re.compile(r"http://localhost(/p/email/\S+)")


@pytest.fixture
def app_config():
    # The receiver listens on 127.0.0.1 (see PREFCENTER_WEBHOOK_ALLOW_PRIVATE).
    return {"WEBHOOK_RETRY_SCHEDULE": [0], "WEBHOOK_TIMEOUT": 2, "WEBHOOK_ALLOW_PRIVATE": True}


@pytest.fixture
def mailer(app, smtp_server):
    app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=smtp_server.port)
    return smtp_server


def fresh(session, model, ident):
    session.rollback()
    session.expire_all()
    found = session.get(model, ident)
    session.commit()
    return found


def ask(client, url: str, new_email: str, **kwargs):
    """Open the preference page, follow "Change my email address", submit the form."""
    page = client.get(url).get_data(as_text=True)
    form_url = re.search(r'href="(/p/[^"]+/email)"', page).group(1)
    form = client.get(form_url, **kwargs).get_data(as_text=True)
    return client.post(form_url, data={"csrf_token": csrf_from(form), "email": new_email},
                       **kwargs)


def deliver(app, inbox, count: int) -> dict[str, object]:
    """Run the mail worker once; the ``count`` new messages by recipient."""
    before = len(inbox)
    MailWorker(app).run_once()
    new = inbox[before:]
    assert len(new) == count, [m["To"] for m in new]
    return {m["To"]: m for m in new}


def confirm(client, path: str):
    page = client.get(path)
    assert page.status_code == 200, page.status_code
    return client.post(path, data={"csrf_token": csrf_from(page.get_data(as_text=True))})


def test_change_of_address_end_to_end(app, client, session, catalogue, links, mailer):
    subscriber = catalogue.subscriber(email="old@example.com", locale="en")
    stored = fresh(session, Subscriber, subscriber.id)
    offers = session.scalar(select(Topic).where(Topic.slug == "offers"))
    # Rules that must travel: a topic, its frequency, a pause, the channels.
    page_url = links.preferences(subscriber)
    unsubscribe_url = links.unsubscribe(subscriber, topic="offers")
    stored.paused_until = utcnow().replace(microsecond=0) + dt.timedelta(days=10)
    stored.subscription(offers.id).frequency = "monthly"
    session.commit()
    before = {s.topic.slug: (s.subscribed, s.frequency, s.channels)
              for s in fresh(session, Subscriber, subscriber.id).subscriptions}
    receiver = Receiver().start()
    try:
        with app.app_context():
            ws = write_session(get_db(app))
            _endpoint, secret = create_endpoint(ws, receiver.url)
            ws.commit()
            ws.close()
        receiver.secrets = [secret]

        assert "Change my email address" in client.get(page_url).get_data(as_text=True)
        response = ask(client, page_url, "New.Person@Example.COM")
        assert response.status_code == 200
        html = response.get_data(as_text=True)
        assert "Check your new inbox" in html and "New.Person@example.com" in html
        assert mailer.messages == []  # nothing on the request path
        mail = deliver(app, mailer, 2)
        notice = mail["old@example.com"]
        assert notice["Subject"] == "A change of your email address was requested"
        assert "N*********@e******.com" in notice.get_content()
        assert "/p/" not in notice.get_content()  # the notice carries no link that acts
        confirmation = mail["New.Person@example.com"]
        assert confirmation["Subject"] == "Confirm your new email address"
        path = CONFIRM_LINK.search(confirmation.get_content()).group(1)

        # Nothing changed yet; a scanner opening the link changes nothing either.
        assert fresh(session, Subscriber, subscriber.id).email == "old@example.com"
        page = client.get(path)
        assert page.status_code == 200
        assert "New.Person@example.com" in page.get_data(as_text=True)
        assert fresh(session, Subscriber, subscriber.id).email == "old@example.com"

        csrf = csrf_from(page.get_data(as_text=True))
        done = client.post(path, data={"csrf_token": csrf})
        assert done.status_code == 200
        assert "Your email address is changed" in done.get_data(as_text=True)
        moved = fresh(session, Subscriber, subscriber.id)
        assert moved.email == "New.Person@example.com"
        after = {s.topic.slug: (s.subscribed, s.frequency, s.channels)
                 for s in moved.subscriptions}
        assert after == before and after["offers"][1] == "monthly"
        assert moved.paused_until == stored.paused_until
        assert moved.public_id == subscriber.public_id

        # One event, pushed to the CRM.
        events = session.scalars(select(Event).where(Event.subscriber_id == subscriber.id,
                                                     Event.action != "created")).all()
        assert [(e.type, e.action, e.source) for e in events] == [
            ("subscriber.updated", "email.changed", "preference_page")]
        assert events[0].before == {"value": "old@example.com"}
        assert events[0].after == {"value": "New.Person@example.com"}
        with app.app_context():
            Worker(get_db(app), WebhookSettings.from_config(app.config)).run_once()
        [hook] = receiver.received
        assert hook.verified == {secret: True}
        assert hook.data["type"] == "subscriber.updated"
        assert hook.data["data"]["changes"] == [{
            "action": "email.changed", "topic": None, "before": "old@example.com",
            "after": "New.Person@example.com"}]
        assert hook.data["data"]["subscriber"]["email"] == "New.Person@example.com"
        assert hook.data["data"]["subscriber"]["topics"]["offers"]["frequency"] == "monthly"
    finally:
        receiver.stop()

    # The link works once.
    again = client.get(path)
    assert again.status_code == 410 and "already used" in again.get_data(as_text=True)
    assert client.post(path, data={"csrf_token": csrf}).status_code == 410
    # Old links keep working, for the same subscriber.
    assert "N*********@e******.com" in client.get(page_url).get_data(as_text=True)
    unsubscribe_page = client.get(unsubscribe_url)
    assert unsubscribe_page.status_code == 200
    assert "N*********@e******.com" in unsubscribe_page.get_data(as_text=True)


def test_the_confirmation_link_expires(app, client, session, catalogue, links, mailer):
    subscriber = catalogue.subscriber(email="slow@example.com")
    assert ask(client, links.preferences(subscriber), "later@example.com").status_code == 200
    path = CONFIRM_LINK.search(
        deliver(app, mailer, 2)["later@example.com"].get_content()).group(1)
    session.execute(update(AddressChange).values(expires_at=utcnow() - dt.timedelta(seconds=1)))
    session.commit()
    response = client.get(path)
    assert response.status_code == 410
    assert "This link has expired" in response.get_data(as_text=True)
    csrf = csrf_from(client.get(links.preferences(subscriber)).get_data(as_text=True))
    assert client.post(path, data={"csrf_token": csrf}).status_code == 410
    assert fresh(session, Subscriber, subscriber.id).email == "slow@example.com"


def test_a_newer_request_replaces_the_older_link(app, client, session, catalogue, links,
                                                 mailer):
    subscriber = catalogue.subscriber(email="twice@example.com")
    url = links.preferences(subscriber)
    ask(client, url, "first@example.com")
    first = CONFIRM_LINK.search(deliver(app, mailer, 2)["first@example.com"].get_content())
    ask(client, url, "second@example.com")
    second = CONFIRM_LINK.search(deliver(app, mailer, 2)["second@example.com"].get_content())
    assert client.get(first.group(1)).status_code == 400
    assert confirm(client, second.group(1)).status_code == 200
    assert fresh(session, Subscriber, subscriber.id).email == "second@example.com"


def test_an_address_in_use_is_refused_without_saying_whose(app, client, session, catalogue,
                                                           links, mailer):
    subscriber = catalogue.subscriber(email="mover@example.com")
    catalogue.subscriber(email="Taken@Example.com", external_id="crm-owner-42")
    response = ask(client, links.preferences(subscriber), "taken@example.com")
    # The request is answered like any other: the page tells nobody the address is known.
    assert response.status_code == 200
    assert "Check your new inbox" in response.get_data(as_text=True)
    path = CONFIRM_LINK.search(deliver(app, mailer, 2)["taken@example.com"].get_content())
    refused = confirm(client, path.group(1))
    html = refused.get_data(as_text=True)
    assert refused.status_code == 409
    assert "cannot be moved here" in html and "Nothing was changed" in html
    assert "crm-owner-42" not in html and "mover" not in html
    assert fresh(session, Subscriber, subscriber.id).email == "mover@example.com"
    assert session.scalars(select(Event).where(Event.action == "email.changed")).all() == []


def test_a_suppressed_address_stays_suppressed(app, client, session, catalogue, links,
                                               mailer):
    gone = catalogue.subscriber(email="erased@example.com")
    erase(session, session.get(Subscriber, gone.id), context=Context(source="api"))
    session.commit()
    assert session.scalar(select(Suppression).where(
        Suppression.email_hash == email_hash("erased@example.com"))) is not None
    subscriber = catalogue.subscriber(email="live@example.com")
    assert fresh(session, Subscriber, subscriber.id).unsubscribed_all is False
    ask(client, links.preferences(subscriber), "Erased@Example.com")
    path = CONFIRM_LINK.search(deliver(app, mailer, 2)["Erased@example.com"].get_content())
    assert confirm(client, path.group(1)).status_code == 200
    moved = fresh(session, Subscriber, subscriber.id)
    assert moved.email == "Erased@example.com"
    assert moved.unsubscribed_all is True  # the change cannot lift the suppression
    actions = [e.action for e in session.scalars(
        select(Event).where(Event.subscriber_id == subscriber.id).order_by(Event.id))]
    assert actions == ["created", "email.changed", "unsubscribed_all"]


@pytest.mark.parametrize(("new", "message"), [
    ("not an address", "does not look right"),
    ("SAME@example.com", "the address we already have"),
])
def test_bad_input_is_a_400_and_sends_nothing(app, client, session, catalogue, links, mailer,
                                             new, message):
    subscriber = catalogue.subscriber(email="same@example.com")
    response = ask(client, links.preferences(subscriber), new)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert session.scalars(select(AddressChange)).all() == []
    assert MailWorker(app).run_once().sent == 0


def test_forged_links_and_missing_csrf(app, client, session, catalogue, links, mailer):
    subscriber = catalogue.subscriber()
    assert client.get("/p/email/not-a-code").status_code == 400
    assert client.get("/p/email/" + "x" * 500).status_code == 400
    url = links.preferences(subscriber)
    assert client.post(f"{url}/email", data={"email": "a@example.com"}).status_code == 400
    assert client.post("/p/forged.token/email", data={}).status_code == 400
    assert session.scalars(select(AddressChange)).all() == []


@pytest.mark.parametrize(("locale", "subject", "button"), [
    ("ar", "أكّد عنوان بريدك الإلكتروني الجديد", "أكّد عنواني الجديد"),
    ("ru", "Подтвердите новый адрес электронной почты", "Подтвердить новый адрес"),
    ("ms", "Sahkan alamat e-mel baharu anda", "Sahkan alamat baharu saya"),
])
def test_the_change_speaks_the_subscribers_language(app, client, session, catalogue, links,
                                                    mailer, locale, subject, button):
    subscriber = catalogue.subscriber(email=f"{locale}@example.com", locale=locale)
    response = ask(client, links.preferences(subscriber), f"new-{locale}@example.com",
                   headers={"Accept-Language": "en"})
    assert response.status_code == 200
    assert "Check your new inbox" not in response.get_data(as_text=True)
    mail = deliver(app, mailer, 2)
    confirmation = mail[f"new-{locale}@example.com"]
    assert confirmation["Subject"] == subject
    assert "Hello" not in confirmation.get_content()
    notice = mail[f"{locale}@example.com"]
    assert "Hello" not in notice.get_content() and "Someone" not in notice.get_content()
    path = CONFIRM_LINK.search(confirmation.get_content()).group(1)
    page = client.get(path, headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert button in page
