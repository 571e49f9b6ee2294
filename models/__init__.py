"""Data models: the CloudEvents contract, the context an agent sees, stream messages and SQL tables."""
