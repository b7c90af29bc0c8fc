"""The worker runtime, the CLI and the reference workers.

from workers import Worker, Context, Retry, Reject
"""

from workers.context import Context
from workers.database import Database
from workers.errors import PublishFailed, Reject, Retry, WorkerError, WorkerNotFound
from workers.worker import Resources, Worker

__all__ = [
    # Declaring workers
    "Context",
    "Resources",
    "Worker",
    # What a handler may do with ctx.db
    "Database",
    # Steering a message from a handler
    "Reject",
    "Retry",
    # Errors
    "PublishFailed",
    "WorkerError",
    "WorkerNotFound",
]
