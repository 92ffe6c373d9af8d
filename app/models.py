"""Every model, imported in one place so metadata is complete (Alembic, tests)."""

from app.admin.models import Admin, AuditEntry
from app.api.models import ApiKey
from app.db import Base
from app.esp.models import EspNonce
from app.events.models import Event
from app.mail.models import MailMessage
from app.sends.models import LastSend
from app.subscribers.models import (
    AddressChange,
    EspEvent,
    Subscriber,
    Subscription,
    Suppression,
)
from app.topics.models import (
    CatalogueVersion,
    FollowLink,
    FollowLinkTranslation,
    Role,
    RoleTopic,
    RoleTopicTranslation,
    RoleTranslation,
    Topic,
    TopicTranslation,
)
from app.webhooks.models import WebhookDelivery, WebhookEndpoint

__all__ = [
    "AddressChange", "Admin", "ApiKey", "AuditEntry", "Base", "CatalogueVersion", "EspEvent",
    "EspNonce", "Event", "FollowLink", "FollowLinkTranslation", "LastSend", "MailMessage", "Role",
    "RoleTopic",
    "RoleTopicTranslation", "RoleTranslation", "Subscriber", "Subscription", "Suppression",
    "Topic", "TopicTranslation", "WebhookDelivery", "WebhookEndpoint",
]
