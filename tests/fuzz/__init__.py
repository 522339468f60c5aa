"""The front-end fuzzer: generated and mutated .nn files against the "accept or located error" property.

See tests/fuzz/README.md for how to run it and what it has found.
"""
