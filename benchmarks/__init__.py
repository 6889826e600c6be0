"""Benchmark harness: finetune_ops against raw aiohttp and the official together SDK.

Run it with ``python -m benchmarks`` (see ``benchmarks/README.md``). Nothing here
is part of the published package.
"""
