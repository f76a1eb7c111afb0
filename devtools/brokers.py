"""One broker launcher by kind: what the benches, the chaos run and tests pick from."""

from pathlib import Path

KINDS = ("kafka", "tansu")


def launcher(kind: str, workdir: Path | None = None):
    """A launcher, not started: one Apache Kafka node (PLAINTEXT only) or a Tansu.

    With ``workdir`` the data and logs go there (Kafka's data under ``kafka/``,
    Tansu's log in ``broker.log``) and stay after ``stop()``; without it, in a
    temporary place.
    """
    if kind == "kafka":
        from devtools.kafka import KafkaBroker

        return KafkaBroker(data_dir=workdir and Path(workdir) / "kafka", sasl=False)
    if kind == "tansu":
        from devtools.tansu import TansuBroker

        return TansuBroker(log_path=workdir and Path(workdir) / "broker.log")
    raise ValueError(f"broker kind {kind!r}: expected one of {', '.join(KINDS)}")


def client_env(kind: str) -> dict[str, str]:
    """Client settings that suit the broker kind, as environment variables.

    Apache Kafka answers a consumer's fetch as soon as records are there (for a
    read_committed reader: as soon as their transaction's markers are), so the
    default wait of 500 ms costs no latency; measured on the test broker, commit to
    consumer p50 3.6 ms with 500 against 3.0 ms with 10, and an idle consumer at 10
    ms costs the broker 15% of a core. Tansu answers only when the wait is over.
    """
    return {"KAFKA_FETCH_WAIT_MAX_MS": "10"} if kind == "tansu" else {}
