"""fleet's benchmark: the runtime against bare aio-pika and FastStream, in one run.

    python -m tests.bench [--quick] [--rounds N] [--json PATH] [--only drain,saga,...]

Each contender runs in its own process, alternating rounds on the same
pre-filled queue; see README.md in this folder for what each scenario measures.

Layout:
    cli.py          options → Config → run every scenario → table and JSON
    config.py       the sizes of a default and a --quick run
    bench.py        one run: the vhost, the topology, measuring one child
    broker.py       management API (vhost, versions) and queue purge/depth
    fill.py         pre-fills a queue with fleet's wire format, confirmed
    payload.py      the ~300-byte OrderPlaced and its properties
    process.py      the parent side of a contender process
    protocol.py     Job and Outcome: what parent and child exchange
    child.py        the child side: `python -m tests.bench.child JOB`
    probe.py        counting and timing inside a contender, off the hot path
    results.py      Series (one row of the table), statistics, targets
    report.py       the table and the JSON file
    machine.py      cores, CPU, Python and library versions
    scenarios/      drain, saga, latency, publish, memory, inbox
    contenders/     fleet, aio-pika, FastStream and the paced publisher
"""
