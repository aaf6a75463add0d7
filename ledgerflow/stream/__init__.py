"""The global event stream: every region's events on NATS JetStream (docs/STREAM.md)."""
