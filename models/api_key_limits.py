"""What the API and the CLI both accept for an integrator's key (no imports: the CLI reads it at start-up)."""

# Who a key is for: letters, digits, dots, dashes and underscores, the first a letter or a digit.
CLIENT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
# How long a new key lives at most, and how long a rotated key keeps working at most.
MAX_KEY_DAYS = 730
MAX_GRACE_DAYS = 30
