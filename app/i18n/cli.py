"""``prefcenter translate``: extract, update and compile the Babel catalogues.

The developer loop: mark strings, run ``extract-update``, translate the new
entries in ``translations/<locale>/LC_MESSAGES/messages.po``, run ``compile``.
Compiled ``.mo`` files are build output (``scripts/setup`` compiles them).
"""

from __future__ import annotations

import contextlib
import gettext
import os
import re
from pathlib import Path

import click
from babel.messages.frontend import CommandLineInterface
from babel.messages.mofile import write_mo
from babel.messages.plurals import PLURALS, get_plural
from babel.messages.pofile import read_po, write_po
from babel.plural import to_gettext
from flask import current_app
from flask.cli import with_appcontext

from app.config import ROOT

TRANSLATIONS = ROOT / "translations"
TEMPLATE = TRANSLATIONS / "messages.pot"
# The language the msgids are written in: its catalogue repeats them.
SOURCE_LOCALE = "en"
# Marker names beyond Babel's defaults (_, gettext, ngettext, pgettext, ...).
KEYWORDS = ("_l", "lazy_gettext", "lazy_ngettext:1,2", "lazy_pgettext:1c,2", "Nn_:1,2")


def pybabel(*args: str, quiet: bool = True) -> None:
    """Run a ``pybabel`` subcommand in-process; a failure raises."""
    status = CommandLineInterface().run(["pybabel", *(["--quiet"] if quiet else []), *args])
    if status:
        raise click.ClickException(f"pybabel {args[0]} failed")


def extract(output: Path = TEMPLATE, root: Path = ROOT) -> Path:
    """Every marked string of ``app/`` and ``templates/`` into a ``.pot`` file."""
    keywords = [arg for keyword in KEYWORDS for arg in ("-k", keyword)]
    with contextlib.chdir(root):  # locations relative to the project: app/..., templates/...
        pybabel("extract", "-F", "babel.cfg", *keywords, "--add-comments=Translators:",
                "--sort-by-file", "--project=Prefcenter", "--copyright-holder=Prefcenter",
                "-o", str(output), ".")
    return output


def catalogue_path(locale: str, directory: Path = TRANSLATIONS) -> Path:
    return directory / locale / "LC_MESSAGES" / "messages.po"


def plural_forms(locale: str) -> str | None:
    """Babel's gettext rule; CLDR's when Babel's table lacks the language (e.g. ``ms``)."""
    if locale in PLURALS or locale.split("_")[0] in PLURALS:
        return None  # ``pybabel init`` already writes the right header
    from babel import Locale

    return to_gettext(Locale.parse(locale).plural_form)


def plural_rule(locale: str) -> tuple[int, str]:
    """``(nplurals, expression)``: the gettext plural rule the installed Babel gives ``locale``,
    the one :func:`init` writes into a new catalogue."""
    header = plural_forms(locale)
    if header is None:
        rule = get_plural(locale)
        return rule.num_plurals, rule.plural_expr
    match = re.fullmatch(r"nplurals=(\d+); plural=(.+);", header.strip())
    if match is None:
        raise ValueError(f"{locale}: unexpected plural rule {header!r}")
    return int(match[1]), match[2]


# Enough integers to tell plural rules apart (CLDR's rules look at n % 100 and, for French
# and Spanish, at millions); gettext hands plural expressions nothing but integers.
PLURAL_SAMPLES = (*range(1001), *(k * 10**6 + r for k in (1, 2, 5) for r in (0, 1, 2, 5)))


def plural_choices(expression: str, numbers=PLURAL_SAMPLES) -> list[int]:
    """Which form a gettext plural ``expression`` picks for each number: two expressions
    written differently (Babel rewrites CLDR's rules now and then) agree when these do."""
    choose = gettext.c2py(expression)
    return [choose(n) for n in numbers]


def agrees_with_babel(catalog) -> bool:
    """A catalogue's Plural-Forms picks the forms the installed Babel's rule picks."""
    count, expression = plural_rule(str(catalog.locale))
    return (catalog.num_plurals == count
            and plural_choices(catalog.plural_expr) == plural_choices(expression))


def init(locale: str, directory: Path = TRANSLATIONS, template: Path = TEMPLATE) -> Path:
    """A new, empty catalogue for ``locale`` with the right plural rule."""
    pybabel("init", "-i", str(template), "-d", str(directory), "-l", locale)
    path = catalogue_path(locale, directory)
    rule = plural_forms(locale)
    if rule:
        with path.open("rb") as handle:
            catalog = read_po(handle, locale=locale)
        catalog.mime_headers = [
            (name, rule if name == "Plural-Forms" else value)
            for name, value in catalog.mime_headers
        ]
        _write(catalog, path)
    return path


def update(directory: Path = TRANSLATIONS, template: Path = TEMPLATE) -> None:
    """Merge the template into every catalogue (no fuzzy guesses, obsolete dropped)."""
    pybabel("update", "-i", str(template), "-d", str(directory),
            "--no-fuzzy-matching", "--ignore-obsolete")


def fill_source(locale: str = SOURCE_LOCALE, directory: Path = TRANSLATIONS) -> int:
    """The source-language catalogue says what the msgid says; returns how many it filled."""
    path = catalogue_path(locale, directory)
    with path.open("rb") as handle:
        catalog = read_po(handle, locale=locale)
    filled = 0
    for message in catalog:
        if not message.id or not _empty(message.string):
            continue
        message.string = tuple(message.id) if message.pluralizable else message.id
        filled += 1
    if filled:
        _write(catalog, path)
    return filled


def compile_catalogues(directory: Path = TRANSLATIONS, *, force: bool = True) -> list[Path]:
    """Compile every catalogue to ``.mo`` (fuzzy entries left out), as ``pybabel compile``
    does, but each file replaced atomically; ``force=False`` skips up-to-date ones."""
    written = []
    for po in sorted(directory.glob("*/LC_MESSAGES/messages.po")):
        mo = po.with_suffix(".mo")
        if not force and mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
            continue
        with po.open("rb") as handle:
            catalog = read_po(handle)
        problems = [f"{message.id!r}: {error}" for message, errors in catalog.check()
                    for error in errors]
        if problems:
            raise click.ClickException(f"{po}: " + "; ".join(problems))
        temporary = mo.with_name(f".{mo.name}.{os.getpid()}.tmp")
        with temporary.open("wb") as handle:
            write_mo(handle, catalog, use_fuzzy=False)
        os.replace(temporary, mo)
        written.append(mo)
    return written


def _empty(string) -> bool:
    if isinstance(string, (list, tuple)):
        return not any(string)
    return not string


def _write(catalog, path: Path) -> None:
    with path.open("wb") as handle:
        write_po(handle, catalog, width=76)


@click.group("translate")
def translate_group() -> None:
    """Translation catalogues (Babel): extract-update, compile, init."""


@translate_group.command("extract-update")
@with_appcontext
def extract_update_command() -> None:
    """Extract marked strings to messages.pot and merge them into every catalogue.

    A locale listed in PREFCENTER_LOCALES without a catalogue gets a new one.
    """
    extract()
    for locale in current_app.config["SUPPORTED_LOCALES"]:
        if not catalogue_path(locale).exists():
            click.echo(f"new catalogue: {init(locale).relative_to(ROOT)}")
    update()
    filled = fill_source()
    click.echo(f"{TEMPLATE.relative_to(ROOT)} extracted; catalogues updated"
               f" ({filled} {SOURCE_LOCALE} entries filled from their msgid)")
    click.echo("Now translate the empty msgstr entries, then run: prefcenter translate compile")


@translate_group.command("compile")
def compile_command() -> None:
    """Compile translations/*/LC_MESSAGES/messages.po to .mo."""
    for mo in compile_catalogues():
        click.echo(f"compiled {mo.relative_to(ROOT)}")


@translate_group.command("init")
@click.argument("locale")
def init_command(locale: str) -> None:
    """Start a catalogue for LOCALE from messages.pot (then add it to PREFCENTER_LOCALES)."""
    if catalogue_path(locale).exists():
        raise click.ClickException(f"{catalogue_path(locale)} exists already")
    click.echo(f"new catalogue: {init(locale).relative_to(ROOT)}")
