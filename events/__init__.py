"""Kafka side: the event codec, the consumer that builds the projection, and the producers."""
