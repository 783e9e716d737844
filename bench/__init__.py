"""The benchmark harness (`scripts/bench`): a tool run by hand, not part of the product."""
