"""How an exchange routes a routing key, for checks that run without a broker."""

from __future__ import annotations

from functools import cache


def routes(exchange_type: str, binding_key: str, routing_key: str) -> bool:
    """Whether a binding with `binding_key` on an exchange of this type routes `routing_key`.

    Headers exchanges route on headers this check cannot see, so they count as routing.
    """
    if exchange_type in ("fanout", "headers"):
        return True
    if exchange_type == "direct":
        return binding_key == routing_key
    return _topic_match(tuple(binding_key.split(".")), tuple(routing_key.split(".")))


@cache
def _topic_match(pattern: tuple[str, ...], words: tuple[str, ...]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_topic_match(rest, words[i:]) for i in range(len(words) + 1))
    if not words:
        return False
    return (head in ("*", words[0])) and _topic_match(rest, words[1:])
