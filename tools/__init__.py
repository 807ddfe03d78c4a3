"""Scripts of the repository (not installed with the plugin)."""
