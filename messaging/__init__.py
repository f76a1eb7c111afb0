"""Kafka plumbing, no models: client configuration, topics, offsets, groups, tail.

It knows no app: callers pass the topics (and dead-letter topic) they mean.
"""
