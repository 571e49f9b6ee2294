"""Operations: the `citizen-context` CLI and the local servers it starts for development and tests."""
