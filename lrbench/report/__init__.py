"""The report: studies read from the storage, ranked, drawn and written as HTML + PNG + CSV."""

# Cyclic garbage collection in the report's processes: reading a storage and drawing a
# figure allocate millions of small objects and free few, and at Python's default
# threshold (700) the collector took ~9% of the drawing time (benchmarks/README.md) and
# ~0.2 s of the parent's ~3 s before drawing.
GC_THRESHOLD = (50_000, 10, 10)
