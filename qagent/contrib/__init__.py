"""Contributed agents: wrappers around other libraries, kept for comparisons.

They are plugins like any other (registered through the public decorators, using only the
agent interface), shipped with qagent so the benchmarks can run them side by side.
"""
