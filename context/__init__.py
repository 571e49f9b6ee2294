"""The projection: each citizen's context in Redis, its rules, and the reads and writes on it."""
