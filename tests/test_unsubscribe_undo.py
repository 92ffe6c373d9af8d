"""The unsubscribe page's undo: only this browser's own unsubscribe, just made, on that page.

The confirmation page's undo form carries a signed receipt of the change (its events, the
subscriber's version after it, this browser), good for 15 minutes. An unsubscribe link alone
(however old), another browser's receipt, an expired one, a second use, or a receipt after any
later change is refused with 409, and nothing changes.
"""

from __future__ import annotations

import re
import time

from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import select

from app.events.models import Event
from app.links.services import UNSUBSCRIBE
from app.subscribers.models import Subscriber
from app.unsubscribe.services import UNDO_SALT, UNDO_WINDOW
from tests.conftest import TEST_SECRET, csrf_from
from tests.test_preferences import form_of
from tests.test_unsubscribe import RECEIPT_RE, minted_401_days_ago, undo_data

REFUSED = "This undo is no longer possible"


def changes_of(session, subscriber) -> list[tuple]:
    session.expire_all()
    return [(e.action, e.topic, e.source) for e in session.scalars(
        select(Event).where(Event.subscriber_id == subscriber.id,
                            Event.type != "subscriber.created").order_by(Event.id))]


def offers_on(session, subscriber) -> bool:
    session.expire_all()
    fresh = session.get(Subscriber, subscriber.id)
    return next(s.subscribed for s in fresh.subscriptions if s.topic.slug == "offers")


def unsubscribe_on_the_page(client, path: str) -> str:
    page = client.get(path).get_data(as_text=True)
    done = client.post(path, data={"csrf_token": csrf_from(page), "confirm": "1"})
    assert done.status_code == 200
    return done.get_data(as_text=True)


def assert_refused(response) -> None:
    assert response.status_code == 409, response.get_data(as_text=True)
    assert REFUSED in response.get_data(as_text=True)


def test_an_unsubscribe_link_alone_cannot_undo(client, catalogue, links, session):
    """The old hole: any link, a CSRF token from the page, no receipt."""
    subscriber = catalogue.subscriber()
    path = links.unsubscribe(subscriber, topic="offers")
    page = client.get(path).get_data(as_text=True)
    client.post(path, data={"csrf_token": csrf_from(page), "confirm": "1"})
    assert not offers_on(session, subscriber)
    page = client.get(path).get_data(as_text=True)
    assert_refused(client.post(path + "/undo", data={"csrf_token": csrf_from(page)}))
    assert_refused(client.post(path + "/undo", data={"csrf_token": csrf_from(page),
                                                     "receipt": "forged.receipt"}))
    assert not offers_on(session, subscriber)
    assert changes_of(session, subscriber) == [("topic.unsubscribed", "offers",
                                                "unsubscribe_page")]


def test_an_expired_link_cannot_undo_a_one_click(client, catalogue, links, session):
    subscriber = catalogue.subscriber()
    old = "/u/" + minted_401_days_ago(UNSUBSCRIBE, subscriber)
    assert client.post(old, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    page = client.get(old).get_data(as_text=True)
    assert_refused(client.post(old + "/undo", data={"csrf_token": csrf_from(page)}))
    session.expire_all()
    assert session.get(Subscriber, subscriber.id).unsubscribed_all is True


def test_another_browsers_receipt_is_refused(app, client, catalogue, links, session):
    subscriber = catalogue.subscriber()
    path = links.unsubscribe(subscriber, topic="offers")
    done = unsubscribe_on_the_page(client, path)
    other = app.test_client()
    page = other.get(path).get_data(as_text=True)
    stolen = {"csrf_token": csrf_from(page), "receipt": RECEIPT_RE.search(done).group(1)}
    assert_refused(other.post(path + "/undo", data=stolen))
    assert not offers_on(session, subscriber)
    # The browser that unsubscribed still can.
    assert client.post(path + "/undo", data=undo_data(done)).status_code == 200
    assert offers_on(session, subscriber)


def test_a_receipt_expires_after_15_minutes(client, catalogue, links, session):
    subscriber = catalogue.subscriber()
    path = links.unsubscribe(subscriber, topic="offers")
    done = unsubscribe_on_the_page(client, path)
    data = undo_data(done)
    serializer = URLSafeTimedSerializer([TEST_SECRET], salt=UNDO_SALT)
    content = serializer.loads(data["receipt"])

    class SignedEarlier(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - UNDO_WINDOW - 5

    data["receipt"] = URLSafeTimedSerializer([TEST_SECRET], salt=UNDO_SALT,
                                             signer=SignedEarlier).dumps(content)
    assert_refused(client.post(path + "/undo", data=data))
    assert not offers_on(session, subscriber)


def test_a_receipt_undoes_once(client, catalogue, links, session):
    subscriber = catalogue.subscriber()
    path = links.unsubscribe(subscriber, topic="offers")
    done = unsubscribe_on_the_page(client, path)
    assert client.post(path + "/undo", data=undo_data(done)).status_code == 200
    page = client.get(path).get_data(as_text=True)
    again = undo_data(done) | {"csrf_token": csrf_from(page)}
    assert_refused(client.post(path + "/undo", data=again))
    assert [a for a, _t, _s in changes_of(session, subscriber)] == [
        "topic.unsubscribed", "topic.subscribed"]


def test_undo_never_reverses_a_master_unsubscribe_made_on_the_preference_page(
        client, catalogue, links, session):
    subscriber = catalogue.subscriber()
    path = links.unsubscribe(subscriber, topic="offers")
    done = unsubscribe_on_the_page(client, path)  # a receipt for "offers"
    url = links.preferences(subscriber)
    data = form_of(client.get(url).get_data(as_text=True))
    data["action"] = "unsubscribe_all"
    assert client.post(url, data=data).status_code == 200
    # The receipt is older than the page's change; the master link has no receipt at all.
    assert_refused(client.post(path + "/undo", data=undo_data(done)))
    master = links.unsubscribe(subscriber)
    page = client.get(master).get_data(as_text=True)
    assert_refused(client.post(master + "/undo", data={"csrf_token": csrf_from(page)}))
    session.expire_all()
    assert session.get(Subscriber, subscriber.id).unsubscribed_all is True
    assert not offers_on(session, subscriber)
    assert [a for a, _t, _s in changes_of(session, subscriber)] == [
        "topic.unsubscribed", "unsubscribed_all"]


def test_a_receipt_is_bound_to_its_link(client, catalogue, links, session):
    """A receipt of one link's change does not undo through another link of the subscriber."""
    subscriber = catalogue.subscriber()
    path = links.unsubscribe(subscriber, topic="offers", campaign="a")
    done = unsubscribe_on_the_page(client, path)
    other = links.unsubscribe(subscriber, topic="offers", campaign="b")
    assert_refused(client.post(other + "/undo", data=undo_data(done)))
    assert not offers_on(session, subscriber)
    assert re.search("class=\"undo\"", done)
