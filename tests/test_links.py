"""Link tokens: the fast reader gives exactly itsdangerous' answers, or steps aside."""

from __future__ import annotations

import time

import pytest
from itsdangerous import URLSafeTimedSerializer

from app.links.services import (
    PREFERENCES,
    SALTS,
    UNSUBSCRIBE,
    ExpiredLink,
    InvalidLink,
    LinkError,
    LinkSigner,
)

MAX_AGES = {PREFERENCES: 3600, UNSUBSCRIBE: 7200}
PUBLIC_ID = "q7Yh3kP0c9bXw2LmN4sT1A"


def minted_at(monkeypatch, signer: LinkSigner, offset: int, purpose: str = UNSUBSCRIBE,
              **claims) -> str:
    """A token minted ``offset`` seconds from now (itsdangerous reads time.time())."""
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + offset)
    try:
        return signer.mint(purpose, PUBLIC_ID, **claims)
    finally:
        monkeypatch.setattr(time, "time", lambda: now)


def signed_by_itsdangerous(key: str, purpose: str, payload) -> str:
    """A token the way itsdangerous itself signs it (zlib attempt and all)."""
    return URLSafeTimedSerializer(key, salt=SALTS[purpose]).dumps(payload)


def tampered(token: str, index: int) -> str:
    swapped = "A" if token[index] != "A" else "B"
    return token[:index] + swapped + token[index + 1:]


def answer(read, purpose: str, token: str):
    try:
        return read(purpose, token)
    except LinkError as exc:
        claims = getattr(exc, "claims", None)
        return type(exc), claims


def corpus(monkeypatch) -> list[tuple[str, str, bool]]:
    """``(purpose, token, fast)``: whether the fast reader should answer it itself."""
    old = LinkSigner(["old-key"], MAX_AGES)
    current = LinkSigner(["new-key", "old-key"], MAX_AGES)
    other = LinkSigner(["someone-else"], MAX_AGES)
    valid = current.mint(UNSUBSCRIBE, PUBLIC_ID, epoch=3, topic="offers", campaign="spring",
                         locale="ar")
    cases = [
        (UNSUBSCRIBE, valid, True),
        (PREFERENCES, current.mint(PREFERENCES, PUBLIC_ID), True),
        (UNSUBSCRIBE, current.mint(UNSUBSCRIBE, PUBLIC_ID, campaign="été-ünï"), True),
        (UNSUBSCRIBE, old.mint(UNSUBSCRIBE, PUBLIC_ID, topic="offers"), True),  # rotated key
        (PREFERENCES, valid, False),  # the other purpose's salt
        (UNSUBSCRIBE, other.mint(UNSUBSCRIBE, PUBLIC_ID), False),
        (UNSUBSCRIBE, minted_at(monkeypatch, current, -7201), False),  # expired
        (UNSUBSCRIBE, minted_at(monkeypatch, current, -7199), True),
        (UNSUBSCRIBE, minted_at(monkeypatch, current, +60), False),  # from the future
        (UNSUBSCRIBE, signed_by_itsdangerous("new-key", UNSUBSCRIBE, [PUBLIC_ID] + ["x" * 40] * 4),
         False),  # compressed: never minted here
        (UNSUBSCRIBE, signed_by_itsdangerous("new-key", UNSUBSCRIBE, {"id": PUBLIC_ID}), False),
        (UNSUBSCRIBE, signed_by_itsdangerous("new-key", UNSUBSCRIBE, [PUBLIC_ID, "1"]), False),
        (UNSUBSCRIBE, signed_by_itsdangerous("new-key", UNSUBSCRIBE, [PUBLIC_ID] * 6), False),
        (UNSUBSCRIBE, "", False),
        (UNSUBSCRIBE, "no-dots-at-all", False),
        (UNSUBSCRIBE, "..", False),
        (UNSUBSCRIBE, valid + "é", False),
        (UNSUBSCRIBE, valid.rpartition(".")[0], False),  # signature cut off
        (UNSUBSCRIBE, valid.replace(".", "!", 1), False),
    ]
    cases += [(UNSUBSCRIBE, tampered(valid, i), False) for i in range(0, len(valid), 7)]
    return cases


def test_the_fast_reader_agrees_with_itsdangerous_on_every_token(monkeypatch):
    signer = LinkSigner(["new-key", "old-key"], MAX_AGES)
    cases = corpus(monkeypatch)
    for purpose, token, fast in cases:
        slow = answer(signer._read, purpose, token)
        quick = signer._fresh(purpose, token)
        assert (quick is not None) == fast, (purpose, token, slow)
        if quick is not None:
            assert quick == slow
        assert answer(signer.loads, purpose, token) == slow
    kinds = [answer(signer.loads, purpose, token) for purpose, token, _ in cases]
    assert any(isinstance(k, tuple) and k[0] is ExpiredLink and k[1] is not None
               for k in kinds)
    assert any(isinstance(k, tuple) and k[0] is InvalidLink for k in kinds)


def test_an_expired_token_still_names_its_subscriber(monkeypatch):
    signer = LinkSigner(["k"], MAX_AGES)
    token = minted_at(monkeypatch, signer, -7201, topic="offers")
    with pytest.raises(ExpiredLink) as caught:
        signer.loads(UNSUBSCRIBE, token)
    assert (caught.value.claims.public_id, caught.value.claims.topic) == (PUBLIC_ID, "offers")
