"""Cursors: signed page positions, and sealed ones for the live feed."""

import pytest
from bson import Timestamp

from api.core.pagination import CursorCodec, InvalidCursor, SealedCursorCodec

SECRET = "s" * 40
POSITION = ["8263A5F0B3000000012B0229296E04", Timestamp(1_700_000_000, 1)]


def test_a_sealed_cursor_round_trips_and_hides_its_position() -> None:
    codec = SealedCursorCodec(SECRET)
    cursor = codec.encode(POSITION)
    assert codec.decode(cursor) == POSITION
    assert "8263A5F0" not in cursor
    assert codec.encode(POSITION) != cursor  # a fresh nonce each time


@pytest.mark.parametrize(
    "forged",
    [
        lambda c: c[:-2] + ("AA" if c[-2:] != "AA" else "BB"),  # altered
        lambda c: SealedCursorCodec("t" * 40).encode(POSITION),  # another server's key
        lambda c: "not-base64!",
        lambda c: CursorCodec("t" * 40).encode(POSITION),  # signed with another key
    ],
)
def test_a_forged_sealed_cursor_is_refused(forged: object) -> None:
    codec = SealedCursorCodec(SECRET)
    with pytest.raises(InvalidCursor):
        codec.decode(forged(codec.encode(POSITION)))  # type: ignore[operator]


def test_a_signed_cursor_from_before_sealing_still_resumes() -> None:
    legacy = CursorCodec(SECRET).encode(POSITION)
    assert SealedCursorCodec(SECRET).decode(legacy) == POSITION
