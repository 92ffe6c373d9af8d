"""ESP intake, ``POST /api/v1/esp/<provider>``: real HTTP posts of each provider's documented
payloads (tests/fixtures/esp/, written from the providers' documentation) with signatures
made here the way each provider makes them.

Where a provider signs with its own key (Amazon SNS's certificate, SendGrid's ECDSA key) the
test generates the key pair: the certificate is pinned through PREFCENTER_SNS_CERT_DIR (what
an operator can do too), so no request leaves the machine; the one thing that cannot run
here, AWS's SubscribeURL, is an httpx transport that records the visit.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
import hmac
import json
import secrets
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select

from app.api.services import recipient_lines
from app.events.models import Event
from app.subscribers.models import EspEvent, Subscriber
from app.subscribers.services import Context, erase
from app.webhooks.models import WebhookDelivery
from app.webhooks.services import create_endpoint

FIXTURES = Path(__file__).parent / "fixtures" / "esp"
TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:ses-feedback"
CERT_NAME = "SimpleNotificationService-prefcentertest.pem"
CERT_URL = f"https://sns.us-east-1.amazonaws.com/{CERT_NAME}"
POSTMARK_USER, POSTMARK_PASSWORD = "postmark", "correct horse battery staple"
MAILGUN_KEY = "key-" + "3ax6xnjp29jd6fds4gc373sgvjxteol0"


def fixture(name: str):
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """The providers' own keys, made here: SNS's certificate (pinned in a directory) and
    SendGrid's P-256 pair; and an SNS certificate that is not pinned."""
    sns_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(sns_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
        .sign(sns_key, hashes.SHA256())
    )
    cert_dir = tmp_path_factory.mktemp("sns-certs")
    (cert_dir / CERT_NAME).write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    sendgrid_key = ec.generate_private_key(ec.SECP256R1())
    sendgrid_public = base64.b64encode(sendgrid_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
    return SimpleNamespace(sns=sns_key, cert_dir=str(cert_dir), sendgrid=sendgrid_key,
                           sendgrid_public=sendgrid_public,
                           stranger=rsa.generate_private_key(public_exponent=65537,
                                                             key_size=2048))


class Aws:
    """The part of AWS that cannot run here: SubscribeURL visits are recorded."""

    def __init__(self):
        self.visited: list[str] = []
        self.transport = httpx.MockTransport(self._answer)

    def _answer(self, request: httpx.Request) -> httpx.Response:
        self.visited.append(str(request.url))
        return httpx.Response(200, text="<ConfirmSubscriptionResponse/>")


@pytest.fixture
def aws():
    return Aws()


@pytest.fixture
def app_config(keys, aws):
    return {
        "SES_TOPIC_ARNS": [TOPIC_ARN],
        "SNS_CERT_DIR": keys.cert_dir,
        "SNS_HTTP_TRANSPORT": aws.transport,
        "SENDGRID_PUBLIC_KEY": keys.sendgrid_public,
        "POSTMARK_WEBHOOK_USER": POSTMARK_USER,
        "POSTMARK_WEBHOOK_PASSWORD": POSTMARK_PASSWORD,
        "MAILGUN_SIGNING_KEY": MAILGUN_KEY,
        "ESP_SOFT_BOUNCE_LIMIT": 3,
    }


# --- how each provider signs (from its documentation) -----------------------------------------


def sns_message(notification: dict | None, *, key, type_="Notification", version="2",
                cert_url=CERT_URL, topic=TOPIC_ARN, message_id=None, **extra) -> dict:
    """An SNS HTTP(S) message, signed as Amazon SNS signs: the named fields as
    ``Name\\nValue\\n`` in byte order of their names, RSA PKCS#1 v1.5 over SHA1 (version 1)
    or SHA256 (version 2)."""
    message = {
        "Type": type_,
        "MessageId": message_id or str(uuid.uuid4()),
        "TopicArn": topic,
        "Message": json.dumps(notification) if notification is not None else "",
        "Timestamp": "2026-11-30T15:00:00.000Z",
        "SignatureVersion": version,
        "SigningCertURL": cert_url,
        **extra,
    }
    if type_ == "Notification":
        names = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
        message["UnsubscribeURL"] = ("https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe"
                                     f"&SubscriptionArn={topic}:1")
    else:
        names = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn",
                 "Type"]
    text = "".join(f"{name}\n{message[name]}\n" for name in names if name in message)
    digest = hashes.SHA256() if version == "2" else hashes.SHA1()  # noqa: S303 (SNS v1)
    signature = key.sign(text.encode(), padding.PKCS1v15(), digest)
    message["Signature"] = base64.b64encode(signature).decode()
    return message


def sendgrid_headers(key, body: bytes, timestamp: int | None = None) -> dict:
    """SendGrid: ECDSA (P-256, SHA-256) over the timestamp header followed by the raw body."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {"Content-Type": "application/json",
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp}


def mailgun_post(payload: dict, *, key=MAILGUN_KEY, timestamp=None, token=None) -> dict:
    """Mailgun: hex HMAC-SHA256, keyed with the signing key, of timestamp + token."""
    post = copy.deepcopy(payload)
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    token = token or secrets.token_hex(25)
    digest = hmac.new(key.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    post["signature"] = {"timestamp": stamp, "token": token, "signature": digest}
    return post


def basic(user: str, password: str) -> dict:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


# --- helpers -----------------------------------------------------------------------------------


@pytest.fixture
def esp(live_server):
    def post(provider: str, *, json_body=None, content=None, headers=None):
        if content is None:
            content = json.dumps(json_body).encode()
        return httpx.post(f"{live_server}/api/v1/esp/{provider}", content=content,
                          headers=headers or {"Content-Type": "application/json"}, timeout=30)
    return post


def fresh(session) -> None:
    """See what the server committed: a new snapshot (SQLite keeps one per transaction),
    nothing kept from before."""
    session.rollback()
    session.expire_all()


def reload(session, subscriber) -> Subscriber:
    fresh(session)
    return session.get(Subscriber, subscriber.id)


def events_of(session, subscriber) -> list[Event]:
    fresh(session)
    return list(session.scalars(select(Event).where(Event.subscriber_id == subscriber.id,
                                                    Event.source == "esp").order_by(Event.id)))


def exported(session, topic_slug: str) -> set[str]:
    from app.topics.models import Topic

    topic = session.scalar(select(Topic).where(Topic.slug == topic_slug))
    lines = "".join(recipient_lines(session, topic.id, None))
    return {json.loads(line)["email"] for line in lines.splitlines()}


def reports(session, **where) -> list[EspEvent]:
    fresh(session)
    return list(session.scalars(select(EspEvent).filter_by(**where).order_by(EspEvent.id)))


# --- Amazon SES through SNS --------------------------------------------------------------------


def test_ses_hard_bounce_marks_the_address_undeliverable(esp, live_session, live_catalogue,
                                                         keys):
    jane = live_catalogue.subscriber(email="hard@example.com")
    assert "hard@example.com" in exported(live_session, "offers")
    message = sns_message(fixture("ses_bounce_permanent.json"), key=keys.sns)
    # SNS posts its JSON as text/plain.
    answer = esp("ses", content=json.dumps(message).encode(),
                 headers={"Content-Type": "text/plain; charset=UTF-8",
                          "x-amz-sns-message-type": "Notification"})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"received": 2, "applied": 1, "duplicates": 0, "unknown": 1}
    jane = reload(live_session, jane)
    assert jane.undeliverable_at is not None
    assert not jane.unsubscribed_all  # a bounce is not a change of mind
    assert "hard@example.com" not in exported(live_session, "offers")
    [event] = events_of(live_session, jane)
    assert (event.type, event.action, event.reason) == (
        "subscriber.updated", "email.undeliverable", "hard_bounce")
    assert event.payload["changes"] == [{"action": "email.undeliverable", "topic": None,
                                         "before": False, "after": True,
                                         "reason": "hard_bounce"}]
    # The address nobody has is recorded for the report and changes nothing.
    [unknown] = reports(live_session, outcome="unknown")
    assert unknown.email == "nobody-we-know@example.com" and unknown.subscriber_id is None
    assert unknown.raw["bounce"]["bounceType"] == "Permanent"


def test_ses_complaint_unsubscribes_from_all_with_its_webhook(esp, live_session,
                                                              live_catalogue, keys):
    endpoint, _secret = create_endpoint(live_session, "https://crm.example.com/hooks")
    live_session.commit()
    ann = live_catalogue.subscriber(email="complainer@example.com")
    message = sns_message(fixture("ses_complaint.json"), key=keys.sns, version="1")
    answer = esp("ses", content=json.dumps(message).encode(),
                 headers={"Content-Type": "text/plain; charset=UTF-8"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["applied"] == 1
    assert reload(live_session, ann).unsubscribed_all
    [event] = events_of(live_session, ann)
    assert (event.type, event.action, event.source, event.reason, event.actor) == (
        "subscriber.unsubscribed", "unsubscribed_all", "esp", "complaint", "ses")
    assert event.payload["source"] == "esp"
    assert event.payload["changes"][0]["reason"] == "complaint"
    assert event.payload["subscriber"]["unsubscribed_all"] is True
    queued = live_session.scalars(select(WebhookDelivery).where(
        WebhookDelivery.event_id == event.id)).all()
    assert [d.endpoint_id for d in queued] == [endpoint.id]


def test_ses_same_message_twice_changes_nothing(esp, live_session, live_catalogue, keys):
    live_catalogue.subscriber(email="complainer@example.com")
    body = json.dumps(sns_message(fixture("ses_complaint.json"), key=keys.sns)).encode()
    first, second = esp("ses", content=body), esp("ses", content=body)
    assert first.json()["applied"] == 1
    assert second.status_code == 200
    assert second.json() == {"received": 1, "applied": 0, "duplicates": 1, "unknown": 0}
    assert len(reports(live_session)) == 1
    assert live_session.scalar(select(func.count(Event.id)).where(Event.source == "esp")) == 1


def test_ses_soft_bounces_count_and_a_run_becomes_hard(esp, live_session, live_catalogue,
                                                       keys):
    sam = live_catalogue.subscriber(email="soft@example.com")
    notification = fixture("ses_bounce_transient.json")
    for n in (1, 2):
        answer = esp("ses", json_body=sns_message(notification, key=keys.sns))
        assert answer.json()["applied"] == 1
        sam = reload(live_session, sam)
        assert (sam.soft_bounces, sam.undeliverable_at) == (n, None)
    # A delivery ends the run.
    delivery = {"notificationType": "Delivery", "mail": notification["mail"],
                "delivery": {"timestamp": "2026-11-30T15:20:00.000Z",
                             "recipients": ["soft@example.com"], "smtpResponse": "250 ok"}}
    assert esp("ses", json_body=sns_message(delivery, key=keys.sns)).status_code == 200
    assert reload(live_session, sam).soft_bounces == 0
    for _ in range(3):
        esp("ses", json_body=sns_message(notification, key=keys.sns))
    sam = reload(live_session, sam)
    assert sam.undeliverable_at is not None
    [event] = events_of(live_session, sam)
    assert (event.action, event.reason) == ("email.undeliverable", "soft_bounces")
    assert "soft@example.com" not in exported(live_session, "offers")


def test_ses_subscription_confirmation_visits_the_subscribe_url(esp, aws, keys,
                                                               live_session):
    url = ("https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription"
           f"&TopicArn={TOPIC_ARN}&Token=2336412f37fb687f5d51e6e2425c464de12884")
    message = sns_message(None, key=keys.sns, type_="SubscriptionConfirmation",
                          SubscribeURL=url, Token="2336412f37fb687f5d51e6e2425c464de12884")
    message["Message"] = ("You have chosen to subscribe to the topic. To confirm the "
                          "subscription, visit the SubscribeURL included in this message.")
    message = sns_message(None, key=keys.sns, type_="SubscriptionConfirmation",
                          SubscribeURL=url, Token=message["Token"],
                          Message=message["Message"])
    answer = esp("ses", json_body=message)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"confirmed": True}
    assert aws.visited == [url]
    assert reports(live_session) == []


@pytest.mark.parametrize("forgery", [
    "tampered_message", "other_key", "cert_not_on_sns_host", "cert_over_http",
    "unpinned_cert", "other_topic", "bad_version", "no_signature",
])
def test_ses_forgeries_are_refused_and_change_nothing(esp, aws, keys, live_session,
                                                      live_catalogue, forgery):
    ann = live_catalogue.subscriber(email="complainer@example.com")
    notification = fixture("ses_complaint.json")
    sign = {"key": keys.sns}
    if forgery == "other_key":
        sign["key"] = keys.stranger
    elif forgery == "cert_not_on_sns_host":
        sign["cert_url"] = f"https://sns.us-east-1.amazonaws.com.evil.example/{CERT_NAME}"
    elif forgery == "cert_over_http":
        sign["cert_url"] = f"http://sns.us-east-1.amazonaws.com/{CERT_NAME}"
    elif forgery == "unpinned_cert":
        sign["cert_url"] = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-x.pem"
    elif forgery == "other_topic":
        sign["topic"] = "arn:aws:sns:us-east-1:999999999999:someone-else"
    elif forgery == "bad_version":
        sign["version"] = "3"
    message = sns_message(notification, **sign)
    if forgery == "tampered_message":
        tampered = copy.deepcopy(notification)
        tampered["complaint"]["complainedRecipients"] = [{"emailAddress": "victim@example.com"}]
        message["Message"] = json.dumps(tampered)
    if forgery == "no_signature":
        del message["Signature"]
    answer = esp("ses", json_body=message)
    assert answer.status_code == 401, answer.text
    assert answer.headers["Content-Type"] == "application/problem+json"
    assert answer.json()["detail"]
    assert not reload(live_session, ann).unsubscribed_all
    assert reports(live_session) == []
    assert aws.visited == []


def test_ses_confirmation_to_a_foreign_subscribe_url_is_refused(esp, aws, keys):
    message = sns_message(None, key=keys.sns, type_="SubscriptionConfirmation",
                          SubscribeURL="https://attacker.example/?Action=ConfirmSubscription",
                          Token="abc", Message="confirm")
    answer = esp("ses", json_body=message)
    assert answer.status_code == 401
    assert aws.visited == []


# --- SendGrid ----------------------------------------------------------------------------------


def test_sendgrid_batch_applies_each_event(esp, live_session, live_catalogue, keys):
    hard = live_catalogue.subscriber(email="hard@example.com")
    complainer = live_catalogue.subscriber(email="complainer@example.com")
    leaver = live_catalogue.subscriber(email="leaver@example.com")
    soft = live_catalogue.subscriber(email="soft@example.com")
    body = (FIXTURES / "sendgrid_events.json").read_bytes()
    answer = esp("sendgrid", content=body, headers=sendgrid_headers(keys.sendgrid, body))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"received": 5, "applied": 3, "duplicates": 0, "unknown": 1}
    assert reload(live_session, hard).undeliverable_at is not None
    assert reload(live_session, complainer).unsubscribed_all
    assert [e.reason for e in events_of(live_session, complainer)] == ["complaint"]
    # group_unsubscribe is applied like a one-click without a topic.
    assert reload(live_session, leaver).unsubscribed_all
    [event] = events_of(live_session, leaver)
    assert (event.action, event.reason) == ("unsubscribed_all", "unsubscribe")
    # A deferral is SendGrid still trying: recorded, nothing changes.
    soft = reload(live_session, soft)
    assert (soft.soft_bounces, soft.undeliverable_at) == (0, None)
    assert [r.outcome for r in reports(live_session, email="soft@example.com")] == ["unchanged"]
    # Again, the same post (a SendGrid retry) changes nothing.
    again = esp("sendgrid", content=body, headers=sendgrid_headers(keys.sendgrid, body))
    assert again.json() == {"received": 5, "applied": 0, "duplicates": 5, "unknown": 0}


@pytest.mark.parametrize("forgery", ["other_key", "tampered_body", "stale", "no_headers",
                                     "garbage_signature"])
def test_sendgrid_forgeries_are_refused(esp, live_session, live_catalogue, keys, forgery):
    complainer = live_catalogue.subscriber(email="complainer@example.com")
    body = (FIXTURES / "sendgrid_events.json").read_bytes()
    headers = sendgrid_headers(keys.sendgrid, body)
    if forgery == "other_key":
        headers = sendgrid_headers(ec.generate_private_key(ec.SECP256R1()), body)
    elif forgery == "tampered_body":
        body = body.replace(b"complainer@example.com", b"victim@example.com")
    elif forgery == "stale":
        headers = sendgrid_headers(keys.sendgrid, body, int(time.time()) - 3600)
    elif forgery == "no_headers":
        headers = {"Content-Type": "application/json"}
    elif forgery == "garbage_signature":
        headers["X-Twilio-Email-Event-Webhook-Signature"] = "not base64!"
    answer = esp("sendgrid", content=body, headers=headers)
    assert answer.status_code == 401, answer.text
    assert not reload(live_session, complainer).unsubscribed_all
    assert reports(live_session) == []


def test_sendgrid_signed_but_malformed_body_is_a_400(esp, keys):
    for body in (b'{"not": "an array"}', b"[1, 2]", b"not json"):
        answer = esp("sendgrid", content=body, headers=sendgrid_headers(keys.sendgrid, body))
        assert answer.status_code == 400, body
        assert answer.headers["Content-Type"] == "application/problem+json"


# --- Postmark ----------------------------------------------------------------------------------


def test_postmark_bounce_complaint_and_subscription_change(esp, live_session, live_catalogue):
    hard = live_catalogue.subscriber(email="hard@example.com")
    complainer = live_catalogue.subscriber(email="complainer@example.com")
    leaver = live_catalogue.subscriber(email="leaver@example.com")
    auth = {"Content-Type": "application/json", **basic(POSTMARK_USER, POSTMARK_PASSWORD)}
    for name in ("postmark_bounce.json", "postmark_spam_complaint.json",
                 "postmark_subscription_change.json"):
        answer = esp("postmark", json_body=fixture(name), headers=auth)
        assert answer.status_code == 200, answer.text
        assert answer.json()["applied"] == 1, name
    assert reload(live_session, hard).undeliverable_at is not None
    assert [e.reason for e in events_of(live_session, complainer)] == ["complaint"]
    assert [e.reason for e in events_of(live_session, leaver)] == ["unsubscribe"]
    # A reactivation at Postmark does not resubscribe anyone.
    reactivated = {**fixture("postmark_subscription_change.json"), "SuppressSending": False,
                   "SuppressionReason": None, "ChangedAt": "2026-12-01T09:00:00Z"}
    answer = esp("postmark", json_body=reactivated, headers=auth)
    assert answer.json()["applied"] == 0
    assert reload(live_session, leaver).unsubscribed_all
    # The same bounce again (a Postmark retry) changes nothing.
    again = esp("postmark", json_body=fixture("postmark_bounce.json"), headers=auth)
    assert again.json()["duplicates"] == 1


@pytest.mark.parametrize("headers", [
    {}, basic(POSTMARK_USER, "wrong"), basic("someone", POSTMARK_PASSWORD),
    {"Authorization": "Bearer " + POSTMARK_PASSWORD}, {"Authorization": "Basic !!!"},
])
def test_postmark_without_the_right_basic_auth_is_refused(esp, live_session, live_catalogue,
                                                          headers):
    complainer = live_catalogue.subscriber(email="complainer@example.com")
    answer = esp("postmark", json_body=fixture("postmark_spam_complaint.json"),
                 headers={"Content-Type": "application/json", **headers})
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Basic")
    assert not reload(live_session, complainer).unsubscribed_all


# --- Mailgun -----------------------------------------------------------------------------------


def test_mailgun_failed_and_complained(esp, live_session, live_catalogue):
    hard = live_catalogue.subscriber(email="hard@example.com")
    complainer = live_catalogue.subscriber(email="complainer@example.com")
    for name in ("mailgun_failed_permanent.json", "mailgun_complained.json"):
        answer = esp("mailgun", json_body=mailgun_post(fixture(name)))
        assert answer.status_code == 200, answer.text
        assert answer.json()["applied"] == 1
    assert reload(live_session, hard).undeliverable_at is not None
    assert [e.reason for e in events_of(live_session, complainer)] == ["complaint"]
    # The same event in a freshly signed post (a Mailgun retry) changes nothing.
    again = esp("mailgun", json_body=mailgun_post(fixture("mailgun_complained.json")))
    assert again.json() == {"received": 1, "applied": 0, "duplicates": 1, "unknown": 0}


def test_mailgun_replayed_token_and_stale_timestamp_are_refused(esp, live_session,
                                                                live_catalogue):
    complainer = live_catalogue.subscriber(email="complainer@example.com")
    post = mailgun_post(fixture("mailgun_failed_permanent.json"))
    assert esp("mailgun", json_body=post).status_code == 200
    replayed = esp("mailgun", json_body=post)
    assert replayed.status_code == 406
    assert "before" in replayed.json()["detail"]
    stale = mailgun_post(fixture("mailgun_complained.json"), timestamp=int(time.time()) - 3600)
    assert esp("mailgun", json_body=stale).status_code == 401
    forged = mailgun_post(fixture("mailgun_complained.json"), key="key-not-the-signing-key")
    assert esp("mailgun", json_body=forged).status_code == 401
    tampered = mailgun_post(fixture("mailgun_complained.json"))
    tampered["signature"]["token"] = secrets.token_hex(25)
    assert esp("mailgun", json_body=tampered).status_code == 401
    assert not reload(live_session, complainer).unsubscribed_all


def test_concurrent_identical_posts_apply_once(esp, live_session, live_catalogue, keys):
    ann = live_catalogue.subscriber(email="complainer@example.com")
    body = json.dumps(sns_message(fixture("ses_complaint.json"), key=keys.sns)).encode()
    answers = []

    def post():
        answers.append(esp("ses", content=body))

    threads = [threading.Thread(target=post) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a.status_code for a in answers) == [200] * 6
    assert sum(a.json()["applied"] for a in answers) == 1
    assert len(events_of(live_session, ann)) == 1
    assert len(reports(live_session)) == 1


# --- bad input, any provider -------------------------------------------------------------------


def test_unknown_and_unconfigured_providers_are_404(esp, live_app):
    assert esp("sparkpost", json_body={}).status_code == 404
    live_app.config["MAILGUN_SIGNING_KEY"] = None
    answer = esp("mailgun", json_body=mailgun_post(fixture("mailgun_complained.json")))
    assert answer.status_code == 404
    assert "PREFCENTER_MAILGUN_SIGNING_KEY" in answer.json()["detail"]


def test_oversized_post_is_413(esp, live_app):
    live_app.config["MAX_CONTENT_LENGTH"] = 1000
    answer = esp("sendgrid", content=b"[" + b" " * 2000 + b"]")
    assert answer.status_code == 413


def test_a_new_address_ends_undeliverable(live_app, live_session, live_catalogue):
    """The CRM (or the subscriber) changing the address lifts what was said of the old one."""
    from app.subscribers.services import change

    jane = live_catalogue.subscriber(email="hard@example.com")
    change(live_session, jane, context=Context(source="esp", reason="hard_bounce"),
           undeliverable=True, allowed={})
    live_session.commit()
    events = change(live_session, jane, context=Context(source="api"),
                    email="jane.new@example.com", allowed={})
    live_session.commit()
    assert [(e.action, (e.after or {}).get("value")) for e in events] == [
        ("email.changed", "jane.new@example.com"), ("email.undeliverable", False)]
    assert reload(live_session, jane).undeliverable_at is None


def test_erasure_scrubs_what_the_esps_reported(esp, live_session, live_catalogue, keys):
    jane = live_catalogue.subscriber(email="hard@example.com")
    esp("ses", json_body=sns_message(fixture("ses_bounce_permanent.json"), key=keys.sns))
    jane = reload(live_session, jane)
    erase(live_session, jane, context=Context(source="api"))
    live_session.commit()
    [report] = reports(live_session, subscriber_id=jane.id)
    assert report.email is None
    assert "hard@example.com" not in json.dumps(report.raw)
    assert report.kind == "hard_bounce"
