"""The relay's publishing order: each wave holds one row per key, in id order."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from workers.outbox.waves import unblocked, waves


@dataclass(frozen=True)
class R:
    id: int
    key: str


def rows(*keys: str) -> list[R]:
    return [R(i, k) for i, k in enumerate(keys, start=1)]


class TestWaves:
    def test_rows_of_distinct_keys_are_one_wave(self) -> None:
        assert waves(rows("a", "b", "c")) == [rows("a", "b", "c")]

    def test_a_keys_next_row_waits_for_the_next_wave(self) -> None:
        a1, b1, a2, a3, c1 = rows("a", "b", "a", "a", "c")
        assert waves([a1, b1, a2, a3, c1]) == [[a1, b1, c1], [a2], [a3]]

    def test_nothing_makes_no_wave(self) -> None:
        assert waves([]) == []

    def test_a_held_key_is_left_out(self) -> None:
        a1, b1 = rows("a", "b")
        assert list(unblocked([a1, b1], {"a"})) == [b1]

    @given(st.lists(st.sampled_from("abcde"), max_size=60))
    def test_every_row_once_and_each_keys_rows_in_id_order(self, keys: list[str]) -> None:
        batch = rows(*keys)
        planned = waves(batch)
        flat = [row for wave in planned for row in wave]
        assert sorted(flat, key=lambda r: r.id) == batch
        for wave in planned:
            assert len({r.key for r in wave}) == len(wave)
            assert [r.id for r in wave] == sorted(r.id for r in wave)
        for key in set(keys):
            assert [r.id for r in flat if r.key == key] == [r.id for r in batch if r.key == key]
