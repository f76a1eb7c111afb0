"""What a chaos run is told: from the environment (``make chaos DURATION=... SEED=...``)."""

import os
import random
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATABASE = "postgres://postgres@127.0.0.1:5432/healthcare_chaos"


def _number(name: str, default: str, kind=int):
    raw = os.environ.get(name, "") or default
    try:
        value = kind(raw)
    except ValueError:
        raise SystemExit(
            f"configuration error: {name}={raw!r} is not a number"
        ) from None
    if value < 0:
        raise SystemExit(f"configuration error: {name}={raw!r} must not be negative")
    return value


@dataclass
class Config:
    duration: float
    seed: int
    broker: str
    database_url: str
    rate: float  # appointment changes per second the load generator aims at
    workdir: Path
    relays: int = 2
    consumers: int = 2
    shards: int = 4
    lease_timeout: float = 5.0
    relay_batch: int = (
        25  # small batches: a backlog of a few hundred rows fills the pipeline
    )
    drain_timeout: float = 120.0
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    jwt_key: str = field(default_factory=lambda: secrets.token_urlsafe(48))

    @classmethod
    def from_env(cls) -> "Config":
        broker = os.environ.get("BROKER", "") or "kafka"
        if broker not in ("kafka", "tansu"):
            raise SystemExit(f"configuration error: BROKER={broker!r}: kafka or tansu")
        seed_raw = os.environ.get("SEED", "")
        seed = _number("SEED", seed_raw) if seed_raw else random.randrange(1, 10**6)
        url = os.environ.get("CHAOS_DATABASE_URL", "") or DEFAULT_DATABASE
        if urlparse(url).scheme not in ("postgres", "postgresql"):
            raise SystemExit(
                "configuration error: CHAOS_DATABASE_URL must be PostgreSQL"
            )
        workdir = Path(os.environ.get("CHAOS_DIR", "") or ROOT / "var" / "chaos")
        return cls(
            duration=_number("DURATION", "300", float),
            seed=seed,
            broker=broker,
            database_url=url,
            rate=_number("CHAOS_RATE", "8", float),
            workdir=workdir,
        )

    @property
    def database_name(self) -> str:
        return urlparse(self.database_url).path.lstrip("/")
