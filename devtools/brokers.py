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
