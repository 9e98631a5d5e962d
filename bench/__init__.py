"""pytest-benchmark suites of hierfed, with the floor and peer baselines in the same group."""
