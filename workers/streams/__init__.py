"""RabbitMQ streams over their native protocol (rstream, port 5552): reading events
from an offset without storing one (`tail`), named consumers' offsets (`offsets`),
and workers whose queue is a stream (`service`: `lock` for one replica per stream,
`positions` for where each consumer is, `consumer` for each message's path,
`message` for a stream message read into the queue workers' Delivery, `amqp10`
for reading its bytes)."""
