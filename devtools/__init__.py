"""What tests, benches and `make run` share and production does not use.

Nothing in production code imports this package.
"""
