"""The chaos suite: book under load while processes, broker and database fail, then judge.

``python -m devtools.chaos`` (``make chaos``) with ``DURATION=`` (seconds, default 300),
``SEED=`` (the fault schedule) and ``BROKER=kafka|tansu``. See ``runner.py``.
"""
