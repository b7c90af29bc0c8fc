"""The HTTP ingress: routes declared in the topology turn POSTed JSON into events.

`app` maps paths to handlers, `auth` checks callers, `identity` gives each
request its message id (signed material only, on a signed route), `dedupe`
remembers those ids, `guard` cuts off slow clients and caps connections, and
`broker` holds the connection and publishes with confirms.
"""
