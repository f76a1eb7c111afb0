"""`make bench`: run every bench/*.py script in turn (each starts what it needs).

A script that takes ``--broker`` runs once on Apache Kafka and once on Tansu
(Tansu only, said in one line, when Java or the Kafka jars are missing here);
one that takes ``--history`` runs with it (empty tables, then N rows of history).
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from common import kafka_can_start  # noqa: E402


def runs(script: Path, brokers: list[str]) -> list[list[str]]:
    """The argument lists to run ``script`` with: one per broker if it takes one.

    A script that takes ``--history`` gets it: its empty-table and its history
    figures come from the same run.
    """
    text = script.read_text()
    history = ["--history"] if '"--history"' in text else []
    if "add_broker_argument(" not in text:
        return [history]
    return [["--broker", broker, *history] for broker in brokers]


def main() -> int:
    scripts = sorted(
        p for p in (ROOT / "bench").glob("*.py") if "__main__" in p.read_text()
    )
    if not scripts:
        print("no bench scripts found")
        return 1
    brokers = ["kafka", "tansu"]
    if not kafka_can_start():
        print("Apache Kafka cannot start here (Java or Maven missing): Tansu only")
        brokers = ["tansu"]
    failed = []
    for script in scripts:
        for extra in runs(script, brokers):
            name = " ".join([str(script.relative_to(ROOT)), *extra])
            print(f"\n##### {name} #####", flush=True)
            command = [sys.executable, str(script), *extra, *sys.argv[1:]]
            if subprocess.call(command, cwd=ROOT) != 0:
                failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
