"""Analysis tools: FLOPs and benchmarks."""
