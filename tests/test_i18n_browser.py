"""The preference page in every locale in real headless Chromium: mirrored in Arabic,
no horizontal overflow on a 360-pixel phone. Screenshots go to test-artifacts/."""

from __future__ import annotations

import pytest

from tests.browser import screenshot

pytestmark = pytest.mark.browser

LOCALES = ["en", "ar", "ru", "ms"]
HEADINGS = {
    "en": "Choose the emails you want",
    "ar": "اختر الرسائل التي تريدها",
    "ru": "Выберите, какие письма получать",
    "ms": "Pilih e-mel yang anda mahu",
}


def centre_x(locator) -> float:
    box = locator.bounding_box()
    assert box is not None, "element is not rendered"
    return box["x"] + box["width"] / 2


def rendered_fonts(tab, selector: str) -> set[str]:
    """The font families Chromium actually drew ``selector``'s text with."""
    cdp = tab.context.new_cdp_session(tab)
    try:
        cdp.send("DOM.enable")
        cdp.send("CSS.enable")
        root = cdp.send("DOM.getDocument")["root"]["nodeId"]
        node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
        fonts = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
        return {font["familyName"] for font in fonts}
    finally:
        cdp.detach()


@pytest.fixture
def subscribers(live_catalogue):
    """A shopper per locale."""
    return {locale: live_catalogue.subscriber(locale=locale) for locale in LOCALES}


@pytest.fixture
def preference_urls(live_server, live_links, subscribers):
    return {locale: live_server + live_links.preferences(subscriber)
            for locale, subscriber in subscribers.items()}


def test_every_locale_renders_and_arabic_is_mirrored(chromium, preference_urls):
    context = chromium.new_context(viewport={"width": 1000, "height": 900})
    try:
        tab = context.new_page()
        tab.set_default_timeout(15000)
        for locale in LOCALES:
            tab.goto(preference_urls[locale])
            assert tab.locator("html").get_attribute("lang") == locale
            assert tab.evaluate("getComputedStyle(document.documentElement).direction") == (
                "rtl" if locale == "ar" else "ltr")
            assert tab.locator("h1").inner_text() == HEADINGS[locale]
            screenshot(tab, f"i18n-preferences-{locale}")

            form = tab.locator("form.preferences")
            middle = centre_x(form)
            submit = centre_x(tab.locator("button[value=save]"))
            label = centre_x(tab.locator(".topic-name").first)
            toggle = centre_x(tab.locator(".topic .toggle").first)
            if locale == "ar":  # mirrored: reading starts on the right, the row ends left
                assert submit < middle, "Arabic submit button should sit on the left half"
                assert label > middle, "Arabic first topic label should sit on the right half"
                assert toggle > label, "Arabic toggle should come first, on the right"
            else:
                assert submit > middle
                assert label < middle
                assert toggle < label
            if locale == "ar":  # the glyphs really come from an Arabic font, not a fallback
                assert rendered_fonts(tab, "h1") == {"Noto Naskh Arabic"}
                assert "Noto Naskh Arabic" in rendered_fonts(tab, ".lead")
    finally:
        context.close()


def test_primary_button_ends_the_row_on_the_mirrored_side(chromium, preference_urls):
    """Save ends the row at the form's inline end: the left edge in Arabic, the right in
    English; "Unsubscribe from all" sits just before it."""
    context = chromium.new_context(viewport={"width": 1000, "height": 900})
    try:
        tab = context.new_page()
        for locale in ("ar", "en"):
            tab.goto(preference_urls[locale])
            form = tab.locator("form.preferences").bounding_box()
            save = tab.locator("button[value=save]").bounding_box()
            unsubscribe = tab.locator("button[value=unsubscribe_all]").bounding_box()
            if locale == "ar":
                assert abs(save["x"] - form["x"]) <= 1
                assert unsubscribe["x"] > save["x"] + save["width"]
            else:
                assert abs(save["x"] + save["width"] - form["x"] - form["width"]) <= 1
                assert unsubscribe["x"] + unsubscribe["width"] < save["x"]
            assert tab.evaluate("document.querySelector('form.preferences button')"
                                ".value") == "save"  # first in the source: Enter saves
    finally:
        context.close()


@pytest.mark.parametrize("locale", LOCALES)
def test_nothing_overflows_a_360_pixel_phone(chromium, live_server, live_links, subscribers,
                                             preference_urls, app_has_unsubscribe, locale):
    pages = {"preferences": preference_urls[locale]}
    if app_has_unsubscribe:
        pages["unsubscribe"] = live_server + live_links.unsubscribe(subscribers[locale],
                                                                   topic="offers")
    context = chromium.new_context(viewport={"width": 360, "height": 740},
                                   device_scale_factor=1, is_mobile=True, has_touch=True)
    try:
        tab = context.new_page()
        for name, url in pages.items():
            tab.goto(url)
            assert tab.locator("html").get_attribute("lang") == locale
            width = tab.evaluate("document.documentElement.scrollWidth")
            screenshot(tab, f"i18n-{name}-{locale}-360")
            assert width <= 360, f"{name} {locale}: {width}px wide on a 360px screen"
            wide = tab.evaluate("""() => [...document.querySelectorAll('body *')]
                .filter(e => e.getBoundingClientRect().right > 360.5
                          || e.getBoundingClientRect().left < -0.5)
                .map(e => e.tagName + '.' + e.className).slice(0, 5)""")
            assert not wide, f"{name} {locale}: elements outside the viewport: {wide}"
    finally:
        context.close()


@pytest.fixture
def app_has_unsubscribe(live_app) -> bool:
    return "unsubscribe.page" in live_app.view_functions
