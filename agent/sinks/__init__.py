"""Where results go: the durable outbox, the MQTT link, topics and payloads, the publisher.

See docs/architecture.md.
"""
