"""Support code of the repository's tools (train/test/demo/analysis) and
tests: not part of the plugin package, which a config imports."""
