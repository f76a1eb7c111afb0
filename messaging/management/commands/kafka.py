import argparse

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from core.tables import render_table
from messaging.config import OpsError
from messaging.groups import group_describe, groups_list
from messaging.reset import (
    GroupHasMembers,
    OffsetResetFailed,
    group_offsets_reset,
    parse_reset_target,
    reset_lines,
)
from messaging.tail import TopicTail
from messaging.topics import topic_describe, topics_create, topics_list

GROUP_HEADERS = [
    "TOPIC",
    "PARTITION",
    "CURRENT-OFFSET",
    "LOG-END-OFFSET",
    "LAG",
    "CONSUMER-ID",
    "HOST",
    "CLIENT-ID",
]
DESCRIBE_HEADERS = [
    "PARTITION",
    "LEADER",
    "REPLICAS",
    "ISR",
    "START-OFFSET",
    "END-OFFSET",
]


class Command(BaseCommand):
    help = (
        "Kafka operations through the project's own clients and settings: "
        "topics create|list|describe, tail, groups list|describe|reset-offsets."
    )

    def add_arguments(self, parser):
        # --timeout is accepted after any sub-command, like the Kafka tools' options.
        common = argparse.ArgumentParser(add_help=False)
        common.add_argument(
            "--timeout", type=float, default=10, help="Seconds to wait for the broker."
        )
        sub = parser.add_subparsers(
            dest="area", required=True, metavar="topics|tail|groups"
        )
        _topics_arguments(sub, common)
        _tail_arguments(sub, common)
        _groups_arguments(sub, common)

    def handle(self, *args, area, action=None, timeout, **options):
        try:
            if area == "topics":
                self.topics(action, timeout, **options)
            elif area == "tail":
                self.tail(timeout, **options)
            elif action == "reset-offsets":
                self.reset_offsets(timeout, **options)
            else:
                self.groups(action, timeout, **options)
        except (OpsError, GroupHasMembers, OffsetResetFailed) as exc:
            raise CommandError(str(exc)) from None

    def table(self, headers, rows) -> None:
        self.stdout.write(render_table(headers, rows))

    def topics(self, action, timeout, **options) -> None:
        if action == "create":
            self.topics_create(timeout, **options)
        elif action == "list":
            self.table(
                ["TOPIC", "PARTITIONS", "REPLICATION"], topics_list(timeout=timeout)
            )
        else:
            self.table(
                DESCRIBE_HEADERS,
                topic_describe(topic=options["topic"], timeout=timeout),
            )

    def topics_create(self, timeout, **options) -> None:
        results = topics_create(
            topics=options["topics"] or settings.KAFKA["PROJECT_TOPICS"],
            partitions=options["partitions"],
            replication_factor=options["replication_factor"],
            config=dict(_key_value(c) for c in options["config"]),
            timeout=timeout,
        )
        self.table(
            ["TOPIC", "PARTITIONS", "REPLICATION", "RESULT"],
            [
                (t, options["partitions"], options["replication_factor"], r)
                for t, r in results
            ],
        )

    def tail(self, timeout, **options) -> None:
        tail = TopicTail(
            topic=options["topic"],
            from_beginning=options["from_beginning"],
            max_messages=options["max_messages"],
            idle_timeout=options["idle_timeout"],
            timeout=timeout,
        )
        tail.install_signal_handlers()
        tail.open()
        self.stdout.write(
            f"{'KEY':<36}  {'PARTITION':>9}  {'OFFSET':>8}  HEADERS  VALUE"
        )
        count = 0
        for record in tail.records():
            headers = " ".join(f"{k}={v}" for k, v in record.headers.items()) or "-"
            self.stdout.write(
                f"{record.key or '-':<36}  {record.partition:>9}  {record.offset:>8}  "
                f"{headers}  {record.value}"
            )
            count += 1
        self.stderr.write(f"Processed a total of {count} messages")

    def groups(self, action, timeout, **options) -> None:
        if action == "list":
            self.table(["GROUP", "STATE"], groups_list(timeout=timeout))
            return
        d = group_describe(group=options["group"], timeout=timeout)
        self.stdout.write(
            f"GROUP {d.group}  STATE {d.state}  MEMBERS {len(d.members)}\n"
        )
        if d.members:
            self.table(["MEMBER-ID", "CLIENT-ID", "HOST", "ASSIGNMENT"], d.members)
            self.stdout.write("")
        self.table(
            GROUP_HEADERS,
            [
                (p.topic, p.partition, p.committed, p.end, p.lag)
                + (p.member, p.host, p.client_id)
                for p in d.partitions
            ],
        )
        total = sum(p.lag or 0 for p in d.partitions)
        self.stdout.write(f"\nTOTAL LAG {total}")

    def reset_offsets(self, timeout, *, group, to, topic, force, **options) -> None:
        try:
            target = parse_reset_target(to)
        except ValueError as exc:
            raise CommandError(f"--to: {exc}") from None
        resets = group_offsets_reset(
            group=group, topics=topic, target=target, force=force, timeout=timeout
        )
        for line in reset_lines(group, target, resets):
            self.stdout.write(line)


def _topics_arguments(sub, common) -> None:
    topics = sub.add_parser("topics", help="Create, list or describe topics.")
    topics_sub = topics.add_subparsers(
        dest="action", required=True, metavar="create|list|describe"
    )
    create = topics_sub.add_parser(
        "create", help="Create topics (default: the project's).", parents=[common]
    )
    create.add_argument(
        "topics", nargs="*", help="Topic names (default: the project's topics)."
    )
    create.add_argument(
        "--partitions", type=int, default=settings.KAFKA["TOPIC_PARTITIONS"]
    )
    create.add_argument(
        "--replication-factor",
        type=int,
        default=settings.KAFKA["TOPIC_REPLICATION_FACTOR"],
    )
    create.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Topic configuration, e.g. min.insync.replicas=2 (repeatable).",
    )
    topics_sub.add_parser("list", help="List topics.", parents=[common])
    describe = topics_sub.add_parser(
        "describe", help="Partitions, replicas and offsets.", parents=[common]
    )
    describe.add_argument("topic")


def _tail_arguments(sub, common) -> None:
    tail = sub.add_parser(
        "tail", help="Print records of a topic as they arrive.", parents=[common]
    )
    tail.add_argument("topic")
    tail.add_argument("--from-beginning", action="store_true")
    tail.add_argument("--max-messages", type=int, help="Stop after this many records.")
    tail.add_argument(
        "--idle-timeout",
        type=float,
        help="Stop after this many seconds without a record.",
    )


def _groups_arguments(sub, common) -> None:
    groups = sub.add_parser("groups", help="List, describe or reset consumer groups.")
    groups_sub = groups.add_subparsers(
        dest="action", required=True, metavar="list|describe|reset-offsets"
    )
    groups_sub.add_parser("list", help="List consumer groups.", parents=[common])
    describe = groups_sub.add_parser(
        "describe",
        help="Members, assignment, committed and end offsets, lag.",
        parents=[common],
    )
    describe.add_argument("group")
    reset = groups_sub.add_parser(
        "reset-offsets",
        help="Commit the group's offsets at the earliest or latest record, or the "
        "first record at or after an ISO 8601 time.",
        parents=[common],
    )
    reset.add_argument("group")
    reset.add_argument("--to", required=True, metavar="earliest|latest|DATETIME")
    reset.add_argument(
        "--topic",
        action="append",
        required=True,
        help="A topic of the group (repeatable).",
    )
    reset.add_argument(
        "--force",
        action="store_true",
        help="Do not refuse a group with live members; take over the members that "
        "are gone but not timed out yet.",
    )


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise CommandError(f"--config {text!r}: expected KEY=VALUE")
    return key, value
