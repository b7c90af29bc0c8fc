"""What an operator sees of a running worker: Prometheus metrics (counted on the
hot path in plain integers, exposed at scrape time), its queue's lag, and W3C
trace context carried in AMQP headers."""
