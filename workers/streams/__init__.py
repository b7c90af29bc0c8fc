"""RabbitMQ streams over their native protocol (rstream, port 5552): reading events
from an offset without storing one (`tail`), and named consumers' offsets (`offsets`)."""
