"""Translations: complete catalogues, locale resolution, plurals, per-locale pages, RTL CSS."""

from __future__ import annotations

import re
import shutil

import pytest
from babel.messages.pofile import read_po
from flask_babel import force_locale, ngettext
from sqlalchemy import select

from app.config import ROOT, from_environ
from app.demo import ROLES, TOPICS
from app.events.models import Event
from app.i18n import cli as i18n_cli
from app.mail.worker import MailWorker
from app.subscribers.models import Subscriber
from app.topics.models import Role, RoleTopic, Topic, TopicTranslation
from tests.conftest import csrf_from

LOCALES = ["en", "ar", "ru", "ms"]
CATALOGUES = ROOT / "translations"
# Every catalogue in the tree and every supported locale is held to the same standard.
CHECKED = sorted({p.parent.parent.name for p in CATALOGUES.glob("*/LC_MESSAGES/messages.po")}
                 | set(from_environ()["SUPPORTED_LOCALES"]) | set(LOCALES))

# What a real translation says, per locale: (h1 of the page, save button, saved notice).
PAGE_TEXTS = {
    "en": ("Choose the emails you want", "Save preferences", "Your preferences are saved."),
    "ar": ("اختر الرسائل التي تريدها", "حفظ التفضيلات", "تم حفظ تفضيلاتك."),
    "ru": ("Выберите, какие письма получать", "Сохранить настройки", "Настройки сохранены."),
    "ms": ("Pilih e-mel yang anda mahu", "Simpan pilihan", "Pilihan anda telah disimpan."),
}
TRANSACTIONAL_NOTICE = {
    "en": "Service messages about your account and orders are not marketing",
    "ar": "الرسائل الخدمية المتعلقة بحسابك وطلباتك ليست تسويقية",
    "ru": "Служебные письма о вашем аккаунте и заказах — не реклама",
    "ms": "Mesej perkhidmatan tentang akaun dan pesanan anda bukan e-mel pemasaran",
}
PAGE_TEXTS_OFFERS = {"en": "Offers", "ar": "العروض", "ru": "«Предложения»", "ms": "Tawaran"}
PRIVACY = {"en": "Privacy policy", "ar": "سياسة الخصوصية",
           "ru": "Политика конфиденциальности", "ms": "Dasar privasi"}
DIRECTION = {"en": "ltr", "ar": "rtl", "ru": "ltr", "ms": "ltr"}


def read_catalogue(path):
    with path.open("rb") as handle:
        return read_po(handle)


def msgid_key(message) -> str:
    return message.id[0] if isinstance(message.id, tuple) else message.id


def html_of(response) -> str:
    return response.get_data(as_text=True)


def root_attributes(html: str) -> tuple[str, str]:
    match = re.search(r'<html lang="([^"]*)" dir="([^"]*)"', html)
    assert match, "no <html lang dir>"
    return match.group(1), match.group(2)


# --- the catalogues ------------------------------------------------------------------

@pytest.mark.parametrize("locale", CHECKED)
def test_catalogue_has_no_untranslated_or_fuzzy_entry(locale):
    path = i18n_cli.catalogue_path(locale, CATALOGUES)
    assert path.exists(), f"{locale} is supported but has no catalogue"
    catalog = read_catalogue(path)
    assert not catalog.fuzzy, f"{locale}: the catalogue header is marked fuzzy"
    untranslated, fuzzy = [], []
    for message in catalog:
        if not message.id:
            continue
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        expected = catalog.num_plurals if message.pluralizable else 1
        if len(strings) != expected or not all(strings):
            untranslated.append(msgid_key(message))
        if message.fuzzy:
            fuzzy.append(msgid_key(message))
    assert not untranslated, f"{locale}: untranslated: {untranslated}"
    assert not fuzzy, f"{locale}: fuzzy: {fuzzy}"
    problems = [(msgid_key(m), errors) for m, errors in catalog.check()]
    assert not problems, f"{locale}: {problems}"


def test_every_marked_string_is_extracted_into_the_template_and_every_catalogue(tmp_path):
    fresh = read_catalogue(i18n_cli.extract(output=tmp_path / "messages.pot"))
    ids = {msgid_key(m) for m in fresh if m.id}
    # the extractor really reads each kind of source: templates, mail, _l, _, ngettext
    assert {"Choose the emails you want", "Hello,", "Daily", "Your language is saved.",
            "You are subscribed to %(num)s topic."} <= ids
    committed = {msgid_key(m) for m in read_catalogue(CATALOGUES / "messages.pot") if m.id}
    assert not sorted(ids - committed), (
        f"not in translations/messages.pot (run `prefcenter translate extract-update`): "
        f"{sorted(ids - committed)}")
    for locale in CHECKED:
        catalog = read_catalogue(i18n_cli.catalogue_path(locale, CATALOGUES))
        have = {msgid_key(m) for m in catalog if m.id}
        assert not sorted(ids - have), f"{locale} lacks: {sorted(ids - have)}"


@pytest.mark.parametrize("locale", LOCALES)
def test_each_catalogue_plural_rule_agrees_with_the_installed_babel(locale):
    """The promise is agreement with the Babel the lock installs (which picks the form
    gettext uses at run time), not the text of one CLDR release's expression."""
    catalog = read_catalogue(i18n_cli.catalogue_path(locale, CATALOGUES))
    count, expression = i18n_cli.plural_rule(locale)
    assert catalog.num_plurals == count
    assert i18n_cli.plural_choices(catalog.plural_expr) == i18n_cli.plural_choices(expression)
    assert i18n_cli.agrees_with_babel(catalog)


def test_a_plural_rule_is_compared_by_the_forms_it_picks():
    russian = read_catalogue(i18n_cli.catalogue_path("ru", CATALOGUES))
    # The same Russian rule as CLDR wrote it before and after Babel 2.19: one rule.
    older = "(n%10==1 && n%100!=11 ? 0 : n%10>=2 && n%10<=4 && (n%100<10 || n%100>=20) ? 1 : 2)"
    newer = ("n % 10 == 1 && n % 100 != 11 ? 0 : n % 10 >= 2 && n % 10 <= 4 && "
             "(n % 100 < 12 || n % 100 > 14) ? 1 : 2")
    assert i18n_cli.plural_choices(older) == i18n_cli.plural_choices(newer)
    # English's rule in a Russian catalogue, or Russian's with a form missing, is caught.
    for header in ("nplurals=2; plural=(n != 1);",
                   "nplurals=3; plural=(n%10==1 && n%100!=11 ? 0 : 2);"):
        russian.mime_headers = [
            (name, header if name == "Plural-Forms" else value)
            for name, value in russian.mime_headers
        ]
        assert not i18n_cli.agrees_with_babel(russian), header


# Russian's one/few/many and Arabic's six forms, each at a number that picks it.
RU_AR_PLURALS = [
    ("ru", 1, "Вы подписаны на 1 тему."),
    ("ru", 2, "Вы подписаны на 2 темы."),
    ("ru", 5, "Вы подписаны на 5 тем."),
    ("ru", 11, "Вы подписаны на 11 тем."),
    ("ru", 21, "Вы подписаны на 21 тему."),
    ("ar", 0, "لست مشتركًا في أي موضوع."),
    ("ar", 1, "أنت مشترك في موضوع واحد."),
    ("ar", 2, "أنت مشترك في موضوعين."),
    ("ar", 3, "أنت مشترك في 3 مواضيع."),
    ("ar", 11, "أنت مشترك في 11 موضوعًا."),
    ("ar", 100, "أنت مشترك في 100 موضوع."),
]


@pytest.mark.parametrize(("locale", "num", "text"), [
    *RU_AR_PLURALS,
    ("ms", 1, "Anda melanggan 1 topik."),
    ("ms", 5, "Anda melanggan 5 topik."),
    ("en", 1, "You are subscribed to 1 topic."),
    ("en", 2, "You are subscribed to 2 topics."),
])
def test_plural_forms_through_flask_babel(app, locale, num, text):
    with app.test_request_context(), force_locale(locale):
        assert ngettext("You are subscribed to %(num)s topic.",
                        "You are subscribed to %(num)s topics.", num) == text


def role_with_topics(session, count: int) -> Role:
    """A role offering ``count`` marketing topics, each on by default."""
    role = Role(slug=f"many-{count}")
    for index in range(count):
        topic = Topic(slug=f"t{count}-{index}", kind="marketing", frequencies=["weekly"],
                      default_frequency="weekly", position=100 + index)
        topic.translations = [TopicTranslation(locale="en", name=f"Topic {index}")]
        role.role_topics.append(RoleTopic(topic=topic, position=index,
                                          default_subscribed=count > 0))
    if count == 0:  # one topic, not subscribed: the page still has something to show
        topic = Topic(slug="t0-0", kind="marketing", frequencies=["weekly"],
                      default_frequency="weekly")
        topic.translations = [TopicTranslation(locale="en", name="Topic 0")]
        role.role_topics.append(RoleTopic(topic=topic, default_subscribed=False))
    session.add(role)
    session.commit()
    return role


@pytest.mark.parametrize(("locale", "num", "text"), RU_AR_PLURALS)
def test_preference_page_counts_subscribed_topics_in_the_right_plural(
        client, session, catalogue, links, locale, num, text):
    role_with_topics(session, num)
    subscriber = catalogue.subscriber(role=f"many-{num}", locale=locale)
    html = html_of(client.get(links.preferences(subscriber)))
    summary = re.search(r'<p class="summary" id="topic-summary">([^<]*)</p>', html)
    assert summary, "no topic summary on the page"
    assert summary.group(1) == text


def test_topic_summary_follows_a_save(client, catalogue, links):
    subscriber = catalogue.subscriber(locale="ru")  # shopper: offers on, 3 others off
    url = links.preferences(subscriber)
    html = html_of(client.get(url))
    assert "Вы подписаны на 1 тему." in html
    response = client.post(url, data={
        "csrf_token": csrf_from(html), "lang": "ru", "action": "save",
        "shown": ["offers", "alerts", "news", "events"], "topic-offers": "on",
        "topic-alerts": "on", "topic-news": "on", "frequency-offers": "weekly",
        "frequency-alerts": "daily", "frequency-news": "monthly", "frequency-events": "monthly"})
    assert "Вы подписаны на 3 темы." in html_of(response)


# --- locale resolution -----------------------------------------------------------------

def test_lang_parameter_beats_link_subscriber_and_browser(client, catalogue, links):
    subscriber = catalogue.subscriber(locale="ms")
    url = links.preferences(subscriber, locale="ru")
    response = client.get(url + "?lang=ar", headers={"Accept-Language": "en"})
    assert root_attributes(html_of(response)) == ("ar", "rtl")


def test_link_locale_beats_subscriber_locale(client, catalogue, links):
    subscriber = catalogue.subscriber(locale="ms")
    response = client.get(links.preferences(subscriber, locale="ru"),
                          headers={"Accept-Language": "ar"})
    assert root_attributes(html_of(response)) == ("ru", "ltr")


def test_subscriber_locale_beats_accept_language(client, catalogue, links):
    subscriber = catalogue.subscriber(locale="ms")
    response = client.get(links.preferences(subscriber), headers={"Accept-Language": "ru"})
    assert root_attributes(html_of(response)) == ("ms", "ltr")
    assert PAGE_TEXTS["ms"][0] in html_of(response)


@pytest.mark.parametrize("lang", ["xx", "a" * 5000, "../../etc/passwd", "en_US\x00", "%ff", ""])
def test_unknown_or_malformed_lang_falls_back_without_error(client, catalogue, links, lang):
    subscriber = catalogue.subscriber(locale="ru")
    response = client.get(links.preferences(subscriber), query_string={"lang": lang})
    assert response.status_code == 200
    assert root_attributes(html_of(response)) == ("ru", "ltr")


def test_regional_variant_picks_the_language(client, catalogue, links):
    subscriber = catalogue.subscriber(locale="en")
    response = client.get(links.preferences(subscriber) + "?lang=ar-EG")
    assert root_attributes(html_of(response)) == ("ar", "rtl")


def test_expired_link_page_speaks_the_links_language(app, client, catalogue):
    from app.links.services import PREFERENCES, get_signer

    subscriber = catalogue.subscriber(locale="en")
    signer = get_signer(app)
    token = signer.mint(PREFERENCES, subscriber.public_id, epoch=subscriber.link_epoch,
                        locale="ru")
    signer.max_ages[PREFERENCES] = -1
    response = client.get(f"/p/{token}", headers={"Accept-Language": "ar"})
    assert response.status_code == 410
    html = html_of(response)
    assert root_attributes(html) == ("ru", "ltr")
    assert "Срок действия ссылки истёк" in html


@pytest.mark.parametrize(("header", "expected"), [
    ("ru;q=0.3, ar;q=0.9, *;q=0.1", "ar"),
    ("ms-MY,ms;q=0.9,en;q=0.5", "ms"),
    ("de-DE, fr;q=0.8, ru;q=0.2", "ru"),
    ("de, fr", "en"),
    ("*", "en"),
    (";;;q=,,,x-\u2603;q=abc", "en"),
    ("ar;q=nonsense, ru;q=0.5", "ru"),
    ("a" * 4000, "en"),
])
def test_accept_language_with_quality_values(client, header, expected):
    """A page without a subscriber (a bad link) is in the browser's best language."""
    response = client.get("/p/not-a-valid-token", headers={"Accept-Language": header})
    assert response.status_code == 400
    assert root_attributes(html_of(response)) == (expected, DIRECTION[expected])


def test_chosen_language_is_remembered_when_the_subscriber_saves(client, session, catalogue,
                                                                  links):
    subscriber = catalogue.subscriber(locale="en")
    url = links.preferences(subscriber)
    html = html_of(client.get(url + "?lang=ru"))  # picked with the switcher
    assert 'name="lang" value="ru"' in html
    action = re.search(r'<form method="post" action="([^"]+)" class="preferences"', html)
    response = client.post(action.group(1), data={
        "csrf_token": csrf_from(html), "lang": "ru", "action": "save", "shown": ["offers"],
        "topic-offers": "on", "frequency-offers": "weekly"})
    assert response.status_code == 200
    assert root_attributes(html_of(response)) == ("ru", "ltr")
    assert "Язык сохранён." in html_of(response)
    session.expire_all()
    assert session.get(Subscriber, subscriber.id).locale == "ru"
    event = session.scalars(select(Event).where(Event.subscriber_id == subscriber.id,
                                                Event.action == "locale")).one()
    assert (event.before, event.after) in [("en", "ru"), ({"value": "en"}, {"value": "ru"})]

    # later pages (no ?lang=) open in the remembered language
    assert root_attributes(html_of(client.get(url)))[0] == "ru"


@pytest.mark.parametrize("lang", [None, "xx"])
def test_save_without_a_valid_lang_keeps_the_subscriber_locale(client, session, catalogue,
                                                               links, lang):
    subscriber = catalogue.subscriber(locale="ms")
    url = links.preferences(subscriber)
    html = html_of(client.get(url, headers={"Accept-Language": "ru"}))
    data = {"csrf_token": csrf_from(html), "action": "save", "shown": ["offers"],
            "topic-offers": "on", "frequency-offers": "weekly"}
    if lang:
        data["lang"] = lang
    response = client.post(url, data=data, headers={"Accept-Language": "ru"})
    assert response.status_code == 200
    assert root_attributes(html_of(response))[0] == "ms"
    session.expire_all()
    assert session.get(Subscriber, subscriber.id).locale == "ms"


# --- the pages in every locale ---------------------------------------------------------

@pytest.mark.parametrize("locale", LOCALES)
def test_preference_page_and_saved_confirmation_are_translated(client, catalogue, links,
                                                               locale):
    heading, button, saved = PAGE_TEXTS[locale]
    subscriber = catalogue.subscriber(locale=locale)
    url = links.preferences(subscriber)
    html = html_of(client.get(url))
    assert root_attributes(html) == (locale, DIRECTION[locale])
    assert f"<h1>{heading}</h1>" in html
    assert button in html
    assert TRANSACTIONAL_NOTICE[locale] in html
    assert PRIVACY[locale] in html
    if locale != "en":
        assert "Choose the emails you want" not in html
        assert "Save preferences" not in html

    response = client.post(url, data={
        "csrf_token": csrf_from(html), "lang": locale, "action": "save",
        "shown": ["offers"], "topic-offers": "on", "frequency-offers": "monthly"})
    page = html_of(response)
    assert root_attributes(page) == (locale, DIRECTION[locale])
    assert saved in page
    monthly = {"en": "Monthly", "ar": "شهريًا", "ru": "Раз в месяц", "ms": "Setiap bulan"}
    assert f"<li>{PAGE_TEXTS_OFFERS[locale]}: {monthly[locale]}.</li>" in page


@pytest.mark.parametrize("locale", LOCALES)
def test_unsubscribe_page_is_translated(app, client, catalogue, links, locale):
    if "unsubscribe.page" not in app.view_functions:
        pytest.skip("the unsubscribe page is not there yet")
    expected = {"en": "Unsubscribe", "ar": "إلغاء الاشتراك", "ru": "Отписаться",
                "ms": "Berhenti melanggan"}
    subscriber = catalogue.subscriber(locale=locale)
    path = links.unsubscribe(subscriber)
    response = client.get(path)
    html = html_of(response)
    assert response.status_code == 200
    assert root_attributes(html) == (locale, DIRECTION[locale])
    assert expected[locale] in html
    assert TRANSACTIONAL_NOTICE[locale] in html
    if locale != "en":
        assert "Unsubscribe" not in re.sub(r"<[^>]+>", " ", html.split("<main", 1)[1])
    switcher = re.search(r'<nav class="languages".*?</nav>', html, re.S)
    assert switcher, "the unsubscribe page has no language switcher"
    assert f'href="{path}?lang=ar"' in switcher.group(0)


def test_language_switcher_keeps_the_token_and_other_parameters(client, catalogue, links):
    subscriber = catalogue.subscriber()
    path = links.preferences(subscriber)
    html = html_of(client.get(path + "?utm_source=mail&lang=ru"))
    switcher = re.search(r'<nav class="languages".*?</nav>', html, re.S).group(0)
    hrefs = dict(re.findall(r'href="([^"]+)" lang="([^"]+)"', switcher))
    targets = {lang: href.replace("&amp;", "&") for href, lang in hrefs.items()}
    assert set(targets) == set(LOCALES)
    for lang, href in targets.items():
        assert href == f"{path}?utm_source=mail&lang={lang}"
    assert 'lang="ru" hreflang="ru"\n               aria-current="true"' in switcher \
        or re.search(r'lang="ru" hreflang="ru"\s+aria-current="true"', switcher)


def test_error_pages_hide_the_switcher_on_purpose(client, catalogue, links):
    """An error answers one request; its URL is not a page to come back to in another
    language (a POST-only URL would even answer 405), so the switcher is left out."""
    for response in (client.get("/p/garbage", headers={"Accept-Language": "ru"}),
                     client.get("/no-such-page")):
        assert response.status_code in (400, 404)
        assert '<nav class="languages"' not in html_of(response)
    subscriber = catalogue.subscriber()
    assert '<nav class="languages"' in html_of(client.get(links.preferences(subscriber)))


@pytest.mark.parametrize("locale", LOCALES)
def test_error_pages_are_translated(client, locale):
    texts = {"en": "This link is not valid", "ar": "هذا الرابط غير صالح",
             "ru": "Ссылка недействительна", "ms": "Pautan ini tidak sah"}
    response = client.get(f"/p/garbage?lang={locale}")
    assert root_attributes(html_of(response)) == (locale, DIRECTION[locale])
    assert texts[locale] in html_of(response)


# --- topic and role texts per locale ---------------------------------------------------

def test_demo_data_ships_every_text_in_all_four_locales():
    for slug, _kind, _freqs, _default, texts in TOPICS:
        assert set(texts) == set(LOCALES), slug
        assert all(name for name, _description in texts.values()), slug
    for slug, names, entries in ROLES:
        assert set(names) == set(LOCALES), slug
        for topic, _on, benefits in entries:
            assert not benefits or set(benefits) == set(LOCALES), (slug, topic)


def test_missing_topic_translation_falls_back_to_the_default_locale(client, session,
                                                                     catalogue, links):
    subscriber = catalogue.subscriber(locale="ms")
    url = links.preferences(subscriber)
    assert "Tawaran" in html_of(client.get(url))
    offers = session.scalars(select(Topic).where(Topic.slug == "offers")).one()
    offers.translations = [t for t in offers.translations if t.locale != "ms"]
    for role_topic in catalogue.role("shopper").role_topics:
        if role_topic.topic.slug == "offers":
            role_topic.translations = [t for t in role_topic.translations if t.locale != "ms"]
    session.commit()
    html = html_of(client.get(url))
    assert "Tawaran" not in html
    assert re.search(r'<label class="topic-name" for="field-topic-offers">Offers</label>', html)
    assert "Sales, discount codes and early access to new arrivals." in html
    assert "Members save 20% on average with our offers." in html
    assert "Makluman" in html  # the other topics stay in Malay


# --- right-to-left stylesheet ----------------------------------------------------------

def test_stylesheet_uses_logical_properties_only():
    css = re.sub(r"/\*.*?\*/", "", (ROOT / "static" / "prefcenter.css").read_text(), flags=re.S)
    physical = re.findall(r"[^\n;{}]*\b(?:left|right)\b[^\n;{}]*", css)
    assert not physical, f"physical left/right in prefcenter.css: {physical}"
    # four-value margin/padding/inset shorthands whose inline-start and inline-end differ
    for prop, values in re.findall(r"\b(margin|padding|inset|border-width)\s*:\s*([^;}]+)", css):
        parts = values.split()
        if len(parts) == 4:
            assert parts[1] == parts[3], f"{prop}: {values} is not mirrored in RTL"
    assert re.search(r'html\[lang\|="ar"\][^{]*\{[^}]*font-family:\s*var\(--font-arabic\)', css)
    assert re.search(r'--font-arabic:\s*"Noto Naskh Arabic", "Noto Sans Arabic"', css)


# --- the developer workflow ------------------------------------------------------------

def test_translate_commands_are_registered(app):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["translate", "--help"])
    assert result.exit_code == 0, result.output
    for command in ("extract-update", "compile", "init"):
        assert command in result.output


def test_compile_writes_every_catalogue(tmp_path):
    shutil.copytree(CATALOGUES, tmp_path / "translations",
                    ignore=shutil.ignore_patterns("*.mo"))
    written = i18n_cli.compile_catalogues(tmp_path / "translations")
    assert sorted(p.parent.parent.name for p in written) == sorted(LOCALES)
    assert not i18n_cli.compile_catalogues(tmp_path / "translations", force=False)


def test_a_fifth_language_starts_with_the_right_plural_rule(tmp_path):
    """``init`` (what extract-update does for a locale new in PREFCENTER_LOCALES)."""
    template = i18n_cli.extract(output=tmp_path / "messages.pot")
    for locale in ("id", "fr", "uk"):
        catalog = read_catalogue(i18n_cli.init(locale, tmp_path, template))
        assert i18n_cli.agrees_with_babel(catalog), locale
        assert catalog.num_plurals == i18n_cli.plural_rule(locale)[0] >= 1
        assert any(m.id == "Choose the emails you want" for m in catalog)


def test_update_keeps_translations_and_the_source_catalogue_fills_itself(tmp_path):
    shutil.copytree(CATALOGUES, tmp_path / "translations",
                    ignore=shutil.ignore_patterns("*.mo"))
    directory = tmp_path / "translations"
    template = read_catalogue(directory / "messages.pot")
    template.add("A brand new sentence.")
    with (directory / "messages.pot").open("wb") as handle:
        from babel.messages.pofile import write_po

        write_po(handle, template)
    i18n_cli.update(directory, directory / "messages.pot")
    assert i18n_cli.fill_source(directory=directory) == 1
    english = read_catalogue(i18n_cli.catalogue_path("en", directory))
    assert english["A brand new sentence."].string == "A brand new sentence."
    malay = read_catalogue(i18n_cli.catalogue_path("ms", directory))
    assert malay["A brand new sentence."].string == ""  # waits for a translator
    assert malay["Save preferences"].string == "Simpan pilihan"
    assert malay.num_plurals == 1


# --- email in the recipient's language -------------------------------------------------

@pytest.mark.parametrize(("locale", "subject", "greeting"), [
    ("ru", "Ваша ссылка для настройки рассылок", "Здравствуйте!"),
    ("ar", "رابطك لإدارة تفضيلات بريدك الإلكتروني", "مرحبًا،"),
    ("ms", "Pautan anda untuk mengurus pilihan e-mel", "Hai,"),
])
def test_fresh_link_mail_is_in_the_subscribers_language(app, client, catalogue, smtp_server,
                                                        locale, subject, greeting):
    from app.links.services import PREFERENCES, get_signer

    subscriber = catalogue.subscriber(locale=locale)
    app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=smtp_server.port)
    signer = get_signer(app)
    token = signer.mint(PREFERENCES, subscriber.public_id, epoch=subscriber.link_epoch)
    signer.max_ages[PREFERENCES] = -1
    html = html_of(client.get(f"/p/{token}", headers={"Accept-Language": "en"}))
    response = client.post(f"/p/{token}/renew", data={"csrf_token": csrf_from(html)},
                           headers={"Accept-Language": "en"})
    assert response.status_code == 200
    assert smtp_server.messages == []  # queued: the worker sends it
    MailWorker(app).run_once()
    message = smtp_server.wait_for_message()
    assert message["Subject"] == subject
    body = message.get_content()
    assert body.startswith(greeting)
    assert "Prefcenter" in body and "/p/" in body
    assert "Hello" not in body and "If you did not ask" not in body


@pytest.mark.parametrize("locale", LOCALES)
def test_unsubscribe_confirmation_is_translated(app, client, catalogue, links, locale):
    if "unsubscribe.page" not in app.view_functions:
        pytest.skip("the unsubscribe page is not there yet")
    done = {"en": "You are unsubscribed", "ar": "تم إلغاء اشتراكك", "ru": "Вы отписались",
            "ms": "Anda telah berhenti melanggan"}
    undo = {"en": "Undo", "ar": "تراجع", "ru": "Отменить", "ms": "Buat asal"}
    subscriber = catalogue.subscriber(locale=locale)
    url = links.unsubscribe(subscriber, topic="offers")
    page = html_of(client.get(url))
    response = client.post(url, data={"csrf_token": csrf_from(page), "confirm": "1"})
    html = html_of(response)
    assert response.status_code == 200
    assert root_attributes(html) == (locale, DIRECTION[locale])
    assert done[locale] in html
    assert undo[locale] in html
