"""Failures: dead-lettered messages grouped by queue, reason and exception type.

Filters narrow what is shown; each action (replay a message, a selection or a
group; replay an edited body; discard; purge a queue) first shows what it
would do, asks for confirmation, then runs and is written to the audit log.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import msgspec
from aiohttp import web
from multidict import MultiMapping

from workers import dlq
from workers.console import actions
from workers.console.app import Console, console_of, html, session_of
from workers.console.audit import Entry, now
from workers.console.browse import QueueNotFound
from workers.console.failures import FailedMessage, Filters, Group, choose, grouped
from workers.console.html import csrf_field, e, table, when
from workers.console.index import QueueRead
from workers.status import managed_queues

#: Messages listed per group; the group's actions still cover every one of them.
SHOWN_PER_GROUP = 25
RANGES = {"": "any time", "15m": "last 15 minutes", "1h": "last hour", "24h": "last 24 hours",
          "7d": "last 7 days"}  # fmt: skip
_SPANS = {"15m": timedelta(minutes=15), "1h": timedelta(hours=1), "24h": timedelta(days=1),
          "7d": timedelta(days=7)}  # fmt: skip
FILTER_FIELDS = ("reason", "type", "q", "range")


def routes(app: web.Application) -> None:
    app.router.add_get("/failures", failures)
    app.router.add_post("/failures/action", action)
    app.router.add_get("/failures/edit", edit_form)
    app.router.add_post("/failures/edit", edit)


def dead_letter_queues(console: Console) -> list[str]:
    """Every dead-letter queue the topology derives, in the file's order."""
    return [m.dead for m in managed_queues(console.topology) if m.dead is not None]


def filters_from(query: Mapping[str, Any]) -> Filters:
    span = _SPANS.get(str(query.get("range", "")))
    return Filters(
        reason=str(query.get("reason", "")).strip(),
        error_type=str(query.get("type", "")).strip(),
        text=str(query.get("q", "")).strip(),
        since=datetime.now(UTC) - span if span else None,
    )


async def _reads(console: Console, queue: str) -> list[QueueRead]:
    """The chosen queue's read, or every dead-letter queue's that holds messages."""
    _, _, index = console.ready
    names = [queue] if queue else dead_letter_queues(console)
    reads = []
    for name in names:
        try:
            reads.append(await index.get(name))
        except QueueNotFound:
            continue
    return [r for r in reads if r.depth or queue]


async def failures(request: web.Request) -> web.Response:
    console = console_of(request)
    queue = request.query.get("queue", "")
    if queue and queue not in dead_letter_queues(console):
        raise web.HTTPNotFound(text=f"{queue!r} is not a dead-letter queue of this topology")
    filters = filters_from(request.query)
    reads = await _reads(console, queue)
    groups = grouped((m for r in reads for m in r.messages), filters)
    body = [_notice(request), _filter_form(console, request.query)]
    for r in reads:
        age = r.age()
        body.append(
            f'<p class="note">{e(r.queue)}: {r.depth} message(s), read {age:.0f}s ago in '
            f"{r.seconds * 1000:.0f} ms without consuming them"
            + (f"; showing the first {len(r.messages)}" if r.partial else "")
            + ".</p>"
        )
    if not groups:
        body.append('<p class="green">No dead-lettered messages match.</p>')
    for group in groups:
        body.append(_group(group, request))
    if queue:
        body.append(
            f'<form method="post" action="/failures/action">{csrf_field(session_of(request))}'
            f'<input type=hidden name=queue value="{e(queue)}"><input type=hidden name=action '
            f'value=purge><button class="red">Purge {e(queue)}…</button></form>'
        )
    total = sum(len(g.messages) for g in groups)
    return html(request, f"Failures ({total})", "".join(body))


def _notice(request: web.Request) -> str:
    done = request.query.get("done")
    return f'<p class="ok" id="done">{e(done)}</p>' if done else ""


def _filter_form(console: Console, query: Mapping[str, str]) -> str:
    options = "".join(
        f'<option value="{e(q)}"{" selected" if query.get("queue") == q else ""}>{e(q)}</option>'
        for q in dead_letter_queues(console)
    )
    ranges = "".join(
        f'<option value="{k}"{" selected" if query.get("range", "") == k else ""}>{v}</option>'
        for k, v in RANGES.items()
    )
    return (
        '<form method="get" action="/failures" class="filters"><fieldset><legend>Filter</legend>'
        f'<label>Queue <select name="queue"><option value="">every queue</option>{options}'
        "</select></label> "
        f'<label>Reason <input name="reason" value="{e(query.get("reason", ""))}" size=14></label> '
        f'<label>Exception type <input name="type" value="{e(query.get("type", ""))}" size=14>'
        "</label> "
        f'<label>Header or body contains <input name="q" value="{e(query.get("q", ""))}"></label> '
        f'<label>Failed <select name="range">{ranges}</select></label> '
        "<button>Apply</button></fieldset></form>"
    )


def _hidden_filters(query: Mapping[str, Any]) -> str:
    return "".join(
        f'<input type=hidden name="{k}" value="{e(query.get(k, ""))}">'
        for k in FILTER_FIELDS
        if query.get(k)
    )


def _group(group: Group, request: web.Request) -> str:
    session = session_of(request)
    shown = group.messages[:SHOWN_PER_GROUP]
    rows = []
    for m in shown:
        p = m.parked
        edit = (
            f'<a href="/failures/edit?{urlencode({"queue": m.queue, "key": m.key})}">edit and '
            "replay</a>"
        )
        rows.append(
            f'<tr><td><input type=checkbox name=key value="{e(m.key)}" '
            f'aria-label="select {e(p.message_id)}"></td><td>{e(p.message_id)}</td>'
            f"<td>{e(p.type)}</td><td>{e(when(m.failed_at))}</td><td>{e(p.attempts)}</td>"
            f"<td>{e(p.worker)}</td><td>{_details(m)}</td><td>{edit}</td></tr>"
        )
    more = len(group.messages) - len(shown)
    head = (
        f'<h2><span class="red">{len(group.messages)}</span> in {e(group.queue)}: '
        f"{e(group.reason)} · {e(group.error_type)}</h2>"
        f'<p class="note">first {e(when(group.first))}, last {e(when(group.last))}'
        + (f" · e.g. {e(group.example_error)}" if group.example_error else "")
        + "</p>"
    )
    return (
        f'<section class="group" data-group="{e(group.id)}">{head}'
        f'<form method="post" action="/failures/action">{csrf_field(session)}'
        f'<input type=hidden name=queue value="{e(group.queue)}">'
        f'<input type=hidden name=group value="{e(group.id)}">{_hidden_filters(request.query)}'
        "<table><thead><tr><th></th><th>Message id</th><th>Type</th><th>Failed</th>"
        "<th>Attempts</th><th>Worker</th><th>Message</th><th></th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
        + (f'<p class="note">and {more} more in this group.</p>' if more > 0 else "")
        + '<button name=action value="replay-selected">Replay selected…</button> '
        f'<button name=action value="replay-group">Replay the group ({len(group.messages)})…'
        "</button> "
        '<button name=action value="discard-selected">Discard selected…</button> '
        '<button name=action value="discard-group">Discard the group…</button>'
        "</form></section>"
    )


def _details(m: FailedMessage) -> str:
    p = m.parked
    headers = msgspec.json.format(msgspec.json.encode(m.headers, enc_hook=str), indent=2).decode()
    props = msgspec.json.format(msgspec.json.encode(m.properties, enc_hook=str), indent=2).decode()
    error = f"<p class=red>{e(p.error)}</p>" if p.error else ""
    return (
        f"<details><summary>{e(p.reason)}</summary>{error}<b>Body</b><pre>{e(m.body_text)}</pre>"
        f"<b>Properties</b><pre>{e(props)}</pre><b>Headers</b><pre>{e(headers)}</pre></details>"
    )


# -- actions ------------------------------------------------------------------------


async def _targets(console: Console, form: MultiMapping[Any]) -> tuple[str, list[FailedMessage]]:
    """The queue and the messages an action names: selected keys, or a (filtered) group."""
    queue = str(form.get("queue", ""))
    if queue not in dead_letter_queues(console):
        raise web.HTTPBadRequest(text=f"{queue!r} is not a dead-letter queue of this topology")
    _, _, index = console.ready
    current = (await index.get(queue)).messages
    what = str(form.get("action", ""))
    if what.endswith("-group"):
        wanted = str(form.get("group", ""))
        match = [g for g in grouped(current, filters_from(form)) if g.id == wanted]
        return queue, match[0].messages if match else []
    return queue, choose(current, (str(k) for k in form.getall("key", [])))


async def action(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    form = await request.post()
    what = str(form.get("action", ""))
    if what not in ("replay-selected", "replay-group", "discard-selected", "discard-group",
                    "purge"):  # fmt: skip
        raise web.HTTPBadRequest(text=f"unknown action {what!r}")
    if what == "purge":
        queue = str(form.get("queue", ""))
        if queue not in dead_letter_queues(console):
            raise web.HTTPBadRequest(text=f"{queue!r} is not a dead-letter queue of this topology")
        if form.get("confirmed") != "yes":
            depth = (await console.ready[2].get(queue)).depth
            lines = [f"Every message in {queue} (about {depth}) would be deleted. "
                     "This cannot be undone."]  # fmt: skip
            return _confirm(request, f"Purge {queue}?", lines, form, [])
        async with console.ready[2].exclusive(queue):
            purged = await dlq.purge(console.settings.amqp_url, queue)
        await _record(request, "purge", queue, purged, {})
        return _back(queue, f"Purged {purged} message(s) from {queue}.")
    queue, chosen = await _targets(console, form)
    if not chosen:
        raise web.HTTPBadRequest(text="nothing selected (or the messages are gone): go back")
    replaying = what.startswith("replay")
    if form.get("confirmed") != "yes":
        if replaying:
            plan = actions.plan_replay(queue, [(m.parked.message_id, m.headers) for m in chosen])
            lines = plan.lines()
        else:
            lines = [f"{len(chosen)} message(s) would be deleted from {queue}, the others kept "
                     "in order. This cannot be undone."]  # fmt: skip
        keys = [m.key for m in chosen]
        return _confirm(request, "Replay?" if replaying else "Discard?", lines, form, keys, chosen)
    connection, _, index = console.ready
    keys_set = {m.key for m in chosen}
    async with index.exclusive(queue):
        if replaying:
            done = await actions.replay(connection, queue, keys_set)
        else:
            done = await actions.discard(connection, queue, keys_set)
    verb = "replay" if replaying else "discard"
    await _record(request, verb, queue, done.count, {"message_ids": done.message_ids,
                                                      "scope": what})  # fmt: skip
    origin = actions.plan_replay(queue, []).origin
    text = (
        f"Replayed {done.count} message(s) from {queue} to {origin}."
        if replaying
        else f"Discarded {done.count} message(s) from {queue}."
    )
    return _back(queue, text)


def _confirm(
    request: web.Request,
    title: str,
    lines: list[str],
    form: MultiMapping[Any],
    keys: list[str],
    chosen: list[FailedMessage] | None = None,
) -> web.Response:
    """The dry run: what the action would do, and a button that does it."""
    hidden = "".join(
        f'<input type=hidden name="{e(k)}" value="{e(v)}">'
        for k, v in form.items()
        if k not in ("key", "csrf", "confirmed")
    ) + "".join(f'<input type=hidden name=key value="{e(k)}">' for k in keys)
    listing = ""
    if chosen:
        listing = table(
            ("Message id", "Type", "Reason", "Goes to"),
            [
                (
                    m.parked.message_id or "-",
                    m.parked.type or "-",
                    m.parked.reason,
                    actions.plan_replay(m.queue, []).origin,
                )
                for m in chosen[:200]
            ],
        )
    body = (
        '<div class="banner" id="dry-run">'
        + "".join(f"<p>{e(line)}</p>" for line in lines)
        + "</div>"
        + listing
        + f'<form method="post" action="{e(request.path)}">{csrf_field(session_of(request))}'
        + hidden
        + '<input type=hidden name=confirmed value=yes><button id="confirm">Confirm</button> '
        '<a href="/failures">Cancel</a></form>'
    )
    return html(request, title, body)


def _back(queue: str, done: str) -> web.StreamResponse:
    return web.Response(
        status=303, headers={"Location": "/failures?" + urlencode({"queue": queue, "done": done})}
    )


async def _record(
    request: web.Request, action: str, queue: str, count: int, detail: dict[str, Any]
) -> None:
    session = session_of(request)
    assert session is not None
    entry = Entry(now(), session.who, session.role, action, queue, count, detail)
    await console_of(request).audit.append(entry)


# -- edit and replay ------------------------------------------------------------------


async def _one(console: Console, queue: str, key: str) -> FailedMessage:
    if queue not in dead_letter_queues(console):
        raise web.HTTPBadRequest(text=f"{queue!r} is not a dead-letter queue of this topology")
    found = choose((await console.ready[2].get(queue)).messages, [key])
    if not found:
        raise web.HTTPNotFound(text="that message is no longer in the queue")
    return found[0]


async def edit_form(request: web.Request) -> web.Response:
    console = console_of(request)
    message = await _one(console, request.query.get("queue", ""), request.query.get("key", ""))
    return _edit_page(request, message, message.body_text)


def _edit_page(
    request: web.Request, message: FailedMessage, body: str, error: str = "", status: int = 200
) -> web.Response:
    p = message.parked
    text = (
        (f'<p class="banner" id="invalid">{e(error)}</p>' if error else "")
        + f"<p>{e(p.type)} {e(p.message_id)} in {e(message.queue)}: {e(p.reason)}"
        + (f" ({e(p.error)})" if p.error else "")
        + "</p><p class=note>The body is checked against the message's contract (its "
        "<code>type</code> and <code>version</code>) before anything is sent.</p>"
        f'<form method="post" action="/failures/edit">{csrf_field(session_of(request))}'
        f'<input type=hidden name=queue value="{e(message.queue)}">'
        f'<input type=hidden name=key value="{e(message.key)}">'
        f'<textarea name=body rows=14 id="body">{e(body)}</textarea>'
        '<p><button id="check">Check and replay…</button></p></form>'
    )
    return html(request, "Edit and replay", text, status=status)


async def edit(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    form = await request.post()
    queue, key = str(form.get("queue", "")), str(form.get("key", ""))
    body = str(form.get("body", ""))
    message = await _one(console, queue, key)
    try:
        actions.validate(message.parked.type, message.headers, body.encode())
    except actions.InvalidEdit as error:
        return _edit_page(request, message, body, f"not sent: {error}", status=400)
    if form.get("confirmed") != "yes":
        plan = actions.plan_replay(queue, [(message.parked.message_id, message.headers)])
        lines = [*plan.lines(), "The edited body fits its contract. It replaces the original:"]
        return _confirm_edit(request, lines, form, body)
    connection, _, index = console.ready
    async with index.exclusive(queue):
        done = await actions.replay(connection, queue, {key}, bodies={key: body.encode()})
    await _record(
        request, "replay-edited", queue, done.count,
        {"message_ids": done.message_ids, "original": message.body_text, "edited": body},
    )  # fmt: skip
    origin = actions.plan_replay(queue, []).origin
    return _back(queue, f"Replayed {done.count} edited message(s) from {queue} to {origin}.")


def _confirm_edit(
    request: web.Request, lines: list[str], form: MultiMapping[Any], body: str
) -> web.Response:
    text = (
        '<div class="banner" id="dry-run">'
        + "".join(f"<p>{e(line)}</p>" for line in lines)
        + f"</div><pre>{e(body)}</pre>"
        + f'<form method="post" action="/failures/edit">{csrf_field(session_of(request))}'
        + "".join(
            f'<input type=hidden name="{k}" value="{e(form.get(k, ""))}">'
            for k in ("queue", "key", "body")
        )
        + '<input type=hidden name=confirmed value=yes><button id="confirm">Confirm</button> '
        '<a href="/failures">Cancel</a></form>'
    )
    return html(request, "Replay the edited message?", text)
