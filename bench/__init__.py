"""The benchmark suite: `citizen-context bench` measures each figure against a ceiling of the same run."""
