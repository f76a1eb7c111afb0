"""`python -m devtools.kafka`: run Apache Kafka in the foreground until Ctrl-C."""

import argparse
import signal
import threading

from devtools.kafka import KafkaBroker, KafkaCluster


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.kafka")
    parser.add_argument("--port", type=int, help="PLAINTEXT port (default: a free one)")
    parser.add_argument("--cluster", action="store_true", help="three nodes, RF 3")
    parser.add_argument("--data", help="data directory (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the data at exit")
    parser.add_argument("--once", action="store_true", help="start, report, stop")
    args = parser.parse_args(argv)
    if args.cluster:
        launcher = KafkaCluster(data_dir=args.data)
    else:
        launcher = KafkaBroker(port=args.port, data_dir=args.data)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        launcher.start()
        print(f"{launcher.label} on {launcher.address}", flush=True)
        if isinstance(launcher, KafkaBroker) and launcher.sasl_port:
            print(f"SASL_SSL on {launcher.sasl_address}, CA {launcher.ca_file}")
        print(f"started in {launcher.started_in:.1f} s, RSS {launcher.rss_mb():.0f} MB")
        print(f"data and logs in {launcher.data_dir}", flush=True)
        if not args.once:
            stop.wait()
    finally:
        launcher.stop(wipe=not args.keep and not args.data)
    return 0
