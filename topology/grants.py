"""How a broker user differs from what it should be: tags, its permissions on the
vhost, and its topic permissions (missing, different, or extra). Pure: no I/O."""

from __future__ import annotations

from topology.resources import Permissions, TopicPermission, UserDecl

NONE = "(none)"


def user_differences(have: UserDecl, want: UserDecl) -> list[str]:
    """One line each, broker value → wanted value (``write: .* → ^orders$``)."""
    lines: list[str] = []
    if sorted(have.tags) != sorted(want.tags):
        lines.append(f"tags: {_tags(have.tags)} → {_tags(want.tags)}")
    lines += _permission_differences(have.permissions, want.permissions)
    have_topics = {t.exchange: t for t in have.topics}
    want_topics = {t.exchange: t for t in want.topics}
    for exchange in sorted(have_topics.keys() | want_topics.keys()):
        lines += _topic_differences(exchange, have_topics.get(exchange), want_topics.get(exchange))
    return lines


def describe_permissions(permissions: Permissions | None) -> str:
    """``configure '', write ^orders$, read ^orders$``, or (none)."""
    if permissions is None:
        return NONE
    return (
        f"configure {_show(permissions.configure)}, write {_show(permissions.write)}, "
        f"read {_show(permissions.read)}"
    )


def describe_topic(topic: TopicPermission | None) -> str:
    """``write ^order\\.placed$, read ''``, or (none)."""
    if topic is None:
        return NONE
    return f"write {_show(topic.write)}, read {_show(topic.read)}"


def _permission_differences(have: Permissions | None, want: Permissions | None) -> list[str]:
    if have == want:
        return []
    if have is None or want is None:
        return [f"permissions: {describe_permissions(have)} → {describe_permissions(want)}"]
    return [
        f"{field}: {_show(old)} → {_show(new)}"
        for field, old, new in (
            ("configure", have.configure, want.configure),
            ("write", have.write, want.write),
            ("read", have.read, want.read),
        )
        if old != new
    ]


def _topic_differences(
    exchange: str, have: TopicPermission | None, want: TopicPermission | None
) -> list[str]:
    if have == want:
        return []
    if have is None or want is None:
        return [
            f"topic permission on exchange {exchange}: {describe_topic(have)} → "
            f"{describe_topic(want)}"
        ]
    return [
        f"topic {exchange} {field}: {_show(old)} → {_show(new)}"
        for field, old, new in (("write", have.write, want.write), ("read", have.read, want.read))
        if old != new
    ]


def _show(expression: str) -> str:
    return expression if expression else "''"


def _tags(tags: list[str]) -> str:
    return ", ".join(sorted(tags)) if tags else NONE
