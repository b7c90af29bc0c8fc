"""The HTTP ingress: routes declared in the topology turn POSTed JSON into events.

`app` maps paths to handlers, `auth` checks callers, `broker` holds the
connection and publishes with confirms.
"""
