"""Benchmarks for ardmzip: lossless bits per subpixel and speed against standard codecs.

Run ``python -m benchmarks.compare --help``; see benchmarks/README.md.
"""
