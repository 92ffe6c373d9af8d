"""Demo data: roles, topics (in en, ar, ru, ms) and a few subscribers. Idempotent."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.subscribers.models import Subscriber
from app.subscribers.services import Context, create_subscriber
from app.topics.models import (
    FollowLink,
    FollowLinkTranslation,
    Role,
    RoleTopic,
    RoleTopicTranslation,
    RoleTranslation,
    Topic,
    TopicTranslation,
)

TOPICS = [
    # slug, kind, frequencies, default, {locale: (name, description)}
    ("offers", "marketing", ["daily", "weekly", "biweekly", "monthly"], "weekly", {
        "en": ("Offers", "Sales, discount codes and early access to new arrivals."),
        "ar": ("العروض", "التخفيضات وأكواد الخصم ووصول مبكر إلى أحدث المنتجات."),
        "ru": ("Предложения", "Распродажи, промокоды и ранний доступ к новинкам."),
        "ms": ("Tawaran", "Jualan, kod diskaun dan akses awal kepada produk baharu."),
    }),
    ("news", "marketing", ["weekly", "biweekly", "monthly"], "monthly", {
        "en": ("News", "What is new at our company and in our products."),
        "ar": ("الأخبار", "كل جديد عن شركتنا ومنتجاتنا."),
        "ru": ("Новости", "Что нового в нашей компании и наших продуктах."),
        "ms": ("Berita", "Perkembangan terbaru syarikat dan produk kami."),
    }),
    ("tips", "marketing", ["weekly", "biweekly", "monthly", "quarterly"], "biweekly", {
        "en": ("Tips & Tricks", "Short guides to get more out of what you use."),
        "ar": ("نصائح وحيل", "أدلة قصيرة لتستفيد أكثر مما تستخدمه."),
        "ru": ("Советы и хитрости", "Короткие инструкции, чтобы получать больше от того, чем вы пользуетесь."),
        "ms": ("Tip & Petua", "Panduan ringkas untuk memanfaatkan sepenuhnya apa yang anda gunakan."),
    }),
    ("events", "marketing", ["monthly", "quarterly"], "monthly", {
        "en": ("Events", "Invitations to webinars, meetups and launches."),
        "ar": ("الفعاليات", "دعوات إلى الندوات عبر الإنترنت واللقاءات وحفلات الإطلاق."),
        "ru": ("Мероприятия", "Приглашения на вебинары, встречи и презентации."),
        "ms": ("Acara", "Jemputan ke webinar, pertemuan dan pelancaran."),
    }),
    ("alerts", "marketing", ["daily", "weekly"], "daily", {
        "en": ("Alerts", "Price drops and back-in-stock notices for things you follow."),
        "ar": ("التنبيهات", "إشعارات انخفاض الأسعار وعودة المنتجات التي تتابعها إلى المخزون."),
        "ru": ("Оповещения", "Снижение цен и поступление товаров, за которыми вы следите."),
        "ms": ("Makluman", "Notis harga turun dan stok kembali untuk item yang anda ikuti."),
    }),
    ("receipts", "transactional", ["daily"], "daily", {
        "en": ("Receipts", ""), "ar": ("الإيصالات", ""), "ru": ("Чеки", ""), "ms": ("Resit", ""),
    }),
    ("shipping", "transactional", ["daily"], "daily", {
        "en": ("Shipping updates", ""), "ar": ("تحديثات الشحن", ""),
        "ru": ("Информация о доставке", ""), "ms": ("Kemas kini penghantaran", ""),
    }),
    ("security", "transactional", ["daily"], "daily", {
        "en": ("Account security", ""), "ar": ("أمان الحساب", ""),
        "ru": ("Безопасность аккаунта", ""), "ms": ("Keselamatan akaun", ""),
    }),
]

ROLES = [
    # slug, names, [(topic, default_subscribed, {locale: benefit})]
    ("shopper", {"en": "Shopper", "ar": "متسوّق", "ru": "Покупатель", "ms": "Pembeli"}, [
        ("offers", True, {
            "en": "Members save 20% on average with our offers.",
            "ar": "يوفّر أعضاؤنا 20% في المتوسط مع عروضنا.",
            "ru": "С нашими предложениями участники экономят в среднем 20%.",
            "ms": "Ahli kami menjimatkan purata 20% dengan tawaran kami.",
        }),
        ("alerts", False, {
            "en": "Be first to know when a favourite is back.",
            "ar": "كن أول من يعلم بعودة منتجك المفضّل.",
            "ru": "Узнавайте первыми, когда любимый товар снова в наличии.",
            "ms": "Jadilah yang pertama tahu apabila kegemaran anda kembali.",
        }),
        ("news", False, {}),
        ("events", False, {}),
    ]),
    ("developer", {"en": "Developer", "ar": "مطوّر", "ru": "Разработчик", "ms": "Pembangun"}, [
        ("tips", True, {
            "en": "Hands-on tips from our engineers, no fluff.",
            "ar": "نصائح عملية من مهندسينا، بلا حشو.",
            "ru": "Практичные советы от наших инженеров, без воды.",
            "ms": "Tip praktikal daripada jurutera kami, tanpa basa-basi.",
        }),
        ("news", True, {
            "en": "Release notes and API changes before they ship.",
            "ar": "ملاحظات الإصدارات وتغييرات الواجهة البرمجية قبل طرحها.",
            "ru": "Заметки о выпусках и изменения API до их выхода.",
            "ms": "Nota keluaran dan perubahan API sebelum ia dilancarkan.",
        }),
        ("events", False, {}),
    ]),
    ("marketer", {"en": "Marketer", "ar": "مسوّق", "ru": "Маркетолог", "ms": "Pemasar"}, [
        ("news", True, {}),
        ("events", True, {
            "en": "Meet peers and learn what works.",
            "ar": "تعرّف على زملائك في المجال واعرف ما الذي ينجح.",
            "ru": "Знакомьтесь с коллегами и узнавайте, что работает.",
            "ms": "Berjumpa rakan seprofesion dan pelajari apa yang berkesan.",
        }),
        ("offers", False, {}),
        ("tips", False, {}),
    ]),
]

# Topics offering more than email (the others offer email only).
CHANNELS = {"alerts": ["email", "sms"], "events": ["email", "sms"]}

FOLLOW_LINKS = [
    # url, role (None: every role), {locale: name}
    ("https://forum.example.com/", None, {
        "en": "Community forum", "ar": "منتدى المجتمع", "ru": "Форум сообщества",
        "ms": "Forum komuniti"}),
    ("https://social.example.com/@prefcenter", None, {
        "en": "Follow us on social media", "ar": "تابعنا على وسائل التواصل الاجتماعي",
        "ru": "Мы в социальных сетях", "ms": "Ikuti kami di media sosial"}),
    ("https://code.example.com/prefcenter", "developer", {
        "en": "Source code and issues", "ar": "الشيفرة المصدرية والمشكلات",
        "ru": "Исходный код и задачи", "ms": "Kod sumber dan isu"}),
]

SUBSCRIBERS = [
    ("demo-1", "jane.doe@example.com", "en", "shopper"),
    ("demo-2", "layla@example.com", "ar", "shopper"),
    ("demo-3", "ivan@example.com", "ru", "developer"),
    ("demo-4", "aisyah@example.com", "ms", "marketer"),
]


def seed_catalogue(session: Session) -> None:
    """Topics and roles with their translations, created where absent."""
    topics = {t.slug: t for t in session.scalars(select(Topic))}
    for position, (slug, kind, freqs, default, texts) in enumerate(TOPICS):
        if slug in topics:
            continue
        topic = Topic(slug=slug, kind=kind, frequencies=freqs, default_frequency=default,
                      channels=CHANNELS.get(slug, ["email"]), position=position)
        topic.translations = [TopicTranslation(locale=loc, name=name, description=desc)
                              for loc, (name, desc) in texts.items()]
        session.add(topic)
        topics[slug] = topic
    session.flush()
    existing = set(session.scalars(select(Role.slug)))
    for position, (slug, names, entries) in enumerate(ROLES):
        if slug in existing:
            continue
        role = Role(slug=slug, position=position)
        role.translations = [RoleTranslation(locale=loc, name=n) for loc, n in names.items()]
        for index, (topic_slug, default_on, benefits) in enumerate(entries):
            rt = RoleTopic(topic=topics[topic_slug], position=index, default_subscribed=default_on)
            rt.translations = [RoleTopicTranslation(locale=loc, benefit=b)
                               for loc, b in benefits.items()]
            role.role_topics.append(rt)
        session.add(role)
    session.flush()
    if session.scalar(select(FollowLink.id).limit(1)) is None:
        roles = {r.slug: r for r in session.scalars(select(Role))}
        for position, (url, role_slug, names) in enumerate(FOLLOW_LINKS):
            link = FollowLink(url=url, role=roles.get(role_slug), position=position)
            link.translations = [FollowLinkTranslation(locale=loc, name=name)
                                 for loc, name in names.items()]
            session.add(link)
        session.flush()


def seed(session: Session, config) -> list[Subscriber]:
    seed_catalogue(session)
    roles = {r.slug: r for r in session.scalars(select(Role))}
    result = []
    for external_id, email, locale, role in SUBSCRIBERS:
        subscriber = session.scalars(
            select(Subscriber).where(Subscriber.external_id == external_id)).unique().first()
        if subscriber is None:
            subscriber, _events = create_subscriber(
                session, email=email, external_id=external_id, locale=locale,
                role=roles[role], context=Context(source="system", actor="demo"))
        result.append(subscriber)
    return result


DEMO_ADMIN_EMAIL = "admin@demo.example.com"


def ensure_demo_admin(session: Session, app) -> str | None:
    """The demo's administrator: made once, with a random password returned that one time
    (None when it exists already). Only ``prefcenter demo`` under PREFCENTER_ENV=demo calls it."""
    import secrets

    from app.admin.models import Admin
    from app.admin.services import create_admin

    if app.config["PREFCENTER_ENV"] != "demo":
        raise RuntimeError("a demo administrator exists only under PREFCENTER_ENV=demo")
    if session.scalar(select(Admin.id).where(Admin.email == DEMO_ADMIN_EMAIL)) is not None:
        return None
    password = secrets.token_urlsafe(12)  # 16 characters, about 96 bits
    create_admin(session, DEMO_ADMIN_EMAIL, password, app)
    return password
