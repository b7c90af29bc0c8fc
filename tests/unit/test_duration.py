"""Durations as the topology file writes them."""

from __future__ import annotations

from datetime import timedelta

import pytest

from topology import Duration


class TestDuration:
    """Duration: parse, print, compare."""

    @pytest.mark.parametrize(
        ("text", "ms"),
        [
            ("250ms", 250),
            ("5s", 5_000),
            ("30s", 30_000),
            ("5m", 300_000),
            ("1h", 3_600_000),
            ("1d", 86_400_000),
        ],
    )
    def test_a_number_and_a_unit_parse_to_milliseconds(self, text: str, ms: int) -> None:
        """Every unit converts to whole milliseconds."""
        # Given / When
        duration = Duration.parse(text)
        # Then
        assert duration.ms == ms

    @pytest.mark.parametrize("text", ["250ms", "5s", "30s", "5m", "1h", "1d", "1500ms", "90s"])
    def test_a_duration_prints_the_way_it_is_written(self, text: str) -> None:
        """parse then str gives the text back, so derived queue names read like the file."""
        # Given
        duration = Duration.parse(text)
        # When
        printed = str(duration)
        # Then
        assert printed == text
        assert Duration.parse(printed) == duration

    @pytest.mark.parametrize(
        ("text", "printed"),
        [("60s", "1m"), ("60m", "1h"), ("24h", "1d"), ("1000ms", "1s"), ("120000ms", "2m")],
    )
    def test_a_duration_prints_in_its_largest_whole_unit(self, text: str, printed: str) -> None:
        """Equal durations print alike, so `60s` and `1m` derive one queue name."""
        # Given / When / Then
        assert str(Duration.parse(text)) == printed

    def test_surrounding_whitespace_is_ignored(self) -> None:
        """A stray space in the YAML is harmless."""
        # Given / When / Then
        assert Duration.parse(" 5s ") == Duration(5_000)

    @pytest.mark.parametrize(
        "value",
        ["", "5", "s", "5 s", "5S", "1.5s", "-5s", "5sec", "5s5", "five seconds", 5, 5.0, None],
    )
    def test_anything_but_a_whole_number_and_a_unit_is_invalid(self, value: object) -> None:
        """The error quotes the value and shows the valid form."""
        # Given / When
        with pytest.raises(ValueError, match="invalid duration") as caught:
            Duration.parse(value)
        # Then
        assert str(caught.value) == (
            f"invalid duration {value!r}: write a whole number and a unit, "
            "like 250ms, 5s, 30s, 5m, 1h or 1d"
        )

    @pytest.mark.parametrize("text", ["0s", "0ms"])
    def test_a_zero_duration_is_invalid(self, text: str) -> None:
        """A duration is positive."""
        # Given / When / Then
        with pytest.raises(ValueError, match="a duration must be positive"):
            Duration.parse(text)

    def test_a_negative_duration_cannot_be_built(self) -> None:
        """The constructor refuses what parse would refuse."""
        # Given / When / Then
        with pytest.raises(ValueError, match="a duration must be positive"):
            Duration(-1)

    def test_parse_accepts_a_duration(self) -> None:
        """Parsing an already parsed value returns it unchanged."""
        # Given
        duration = Duration(5_000)
        # When / Then
        assert Duration.parse(duration) is duration

    def test_durations_convert_to_seconds_and_timedelta(self) -> None:
        """Callers that need seconds or a timedelta get one without arithmetic."""
        # Given
        duration = Duration.parse("1500ms")
        # When / Then
        assert duration.seconds == 1.5
        assert duration.timedelta == timedelta(milliseconds=1500)

    def test_durations_compare_and_hash_by_length(self) -> None:
        """`60s` and `1m` are one duration; shorter sorts first."""
        # Given
        minute, sixty_seconds, second = Duration.parse("1m"), Duration.parse("60s"), Duration(1000)
        # When / Then
        assert minute == sixty_seconds
        assert hash(minute) == hash(sixty_seconds)
        assert len({minute, sixty_seconds}) == 1
        assert second < minute
        assert sorted([minute, second]) == [second, minute]
        assert minute != 60_000

    def test_the_repr_shows_the_written_form(self) -> None:
        """A Duration in a failing assertion reads like the file."""
        # Given / When / Then
        assert repr(Duration(30_000)) == "Duration(30s)"
