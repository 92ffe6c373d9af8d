"""``prefcenter links mint`` and the fast minter behind it."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import time

import pytest

from app.links.cli import OUTPUT_COLUMNS
from app.links.minting import LinkTarget, Minter
from app.links.services import PREFERENCES, UNSUBSCRIBE, get_signer, links_for
from app.subscribers.services import Context, erase


def rows_of(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_minter_makes_the_tokens_linksigner_makes(app):
    signer = get_signer(app)
    minter = Minter.for_app(app)
    target = LinkTarget("AbCdEfGhIjKlMnOpQrStUv", 3)
    for claims in ({}, {"topic": "offers"}, {"topic": "offers", "campaign": "spring-ü",
                                             "locale": "ar"}, {"campaign": "c"}):
        for _attempt in range(3):
            second = int(time.time())
            expected = links_for(app, target, **claims)
            made = minter.links(target, **claims)
            if int(time.time()) == second:
                break
        assert made == expected
        pref = made["preferences_url"].rsplit("/", 1)[1]
        unsub = made["unsubscribe_url"].rsplit("/", 1)[1]
        assert signer.loads(PREFERENCES, pref).topic == claims.get("topic")
        assert signer.loads(UNSUBSCRIBE, unsub).epoch == 3


def test_minter_signs_with_the_first_of_rotated_keys(app):
    rotated = Minter(["new-key", app.config["SECRET_KEYS"][0]], "http://localhost")
    token = rotated.tokens("AbCdEfGhIjKlMnOpQrStUv")[1]
    with pytest.raises(Exception, match="not valid"):
        get_signer(app).loads(UNSUBSCRIBE, token)


def test_mint_cli_streams_links_and_reports_errors(app, client, catalogue, session, tmp_path):
    alice = catalogue.subscriber(external_id="mint-a")
    catalogue.subscriber(external_id="mint-b", locale="ru")
    gone = catalogue.subscriber(external_id="mint-gone")
    erase(session, gone, context=Context(source="system"))
    session.commit()
    source = tmp_path / "in.csv"
    source.write_text(
        "external_id,topic,campaign,locale\n"
        "mint-a,offers,spring,\n"
        "mint-b,,,ru\n"
        "nobody,,,\n"
        "mint-gone,,,\n"
        "mint-a,gossip,,\n"
        "mint-a,receipts,,\n"
        "mint-b,news,launch,xx\n"
        "mint-a,alerts,summer,ms\n", encoding="utf-8")
    target = tmp_path / "out.csv"
    result = app.test_cli_runner().invoke(
        args=["links", "mint", "--input", str(source), "--output", str(target), "--chunk", "3"])
    assert result.exit_code == 1, result.output
    text = target.read_text(encoding="utf-8")
    assert text.splitlines()[0] == ",".join(OUTPUT_COLUMNS)
    rows = rows_of(text)
    assert [r["external_id"] for r in rows] == ["mint-a", "mint-b", "nobody", "mint-gone",
                                                "mint-a", "mint-a", "mint-b", "mint-a"]
    good = [r for r in rows if not r["error"]]
    assert len(good) == 3
    assert "No subscriber" in rows[2]["error"] and "No subscriber" in rows[3]["error"]
    assert "gossip" in rows[4]["error"] and "transactional" in rows[5]["error"]
    assert "xx" in rows[6]["error"]
    assert "5 rows failed" in result.output
    first = rows[0]
    assert first["topic"] == "offers" and first["campaign"] == "spring"
    assert first["list_unsubscribe"] == f"<{first['unsubscribe_url']}>"
    assert first["list_unsubscribe_post"] == "List-Unsubscribe=One-Click"
    assert not first["preferences_url"].startswith("mailto:")

    # The minted links open the real pages, and one-click unsubscribes.
    page = client.get(rows[1]["preferences_url"].removeprefix("http://localhost"))
    assert page.status_code == 200 and 'lang="ru"' in page.get_data(as_text=True)
    unsub = first["unsubscribe_url"].removeprefix("http://localhost")
    assert client.get(unsub).status_code == 200
    assert client.post(unsub, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    session.expire_all()
    offers = {s.topic.slug: s for s in alice.subscriptions}["offers"]
    assert offers.subscribed is False


def test_mint_cli_all_good_exits_zero_and_reads_stdin(app, catalogue):
    catalogue.subscriber(external_id="mint-ok")
    result = app.test_cli_runner().invoke(args=["links", "mint"],
                                          input="external_id\nmint-ok\n\nmint-ok\n")
    assert result.exit_code == 0, result.output
    assert "minted links for 2 rows; 0 rows failed" in result.output


def test_mint_cli_needs_an_external_id_column(app, catalogue):
    result = app.test_cli_runner().invoke(args=["links", "mint"], input="id,topic\n1,offers\n")
    assert result.exit_code == 2
    assert "external_id column" in result.output


def test_mint_command_as_a_real_process(live_app, live_catalogue, database_url, tmp_path):
    live_catalogue.subscriber(external_id="proc-1")
    env = {**os.environ, "PREFCENTER_DATABASE_URL": database_url, "PREFCENTER_ENV": "test",
           "PREFCENTER_SECRET_KEY": live_app.config["SECRET_KEYS"][0],
           "PREFCENTER_BASE_URL": "https://prefs.example.com"}
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "links", "mint", "--input", "-", "--output", "-"],
        input="external_id,campaign\nproc-1,weekly-digest\n", capture_output=True, text=True,
        env=env, timeout=60, cwd=os.path.dirname(os.path.dirname(__file__)), check=False)
    assert done.returncode == 0, done.stderr
    rows = rows_of(done.stdout)
    assert len(rows) == 1
    assert rows[0]["unsubscribe_url"].startswith("https://prefs.example.com/u/")
    token = rows[0]["unsubscribe_url"].rsplit("/", 1)[1]
    assert get_signer(live_app).loads(UNSUBSCRIBE, token).campaign == "weekly-digest"
