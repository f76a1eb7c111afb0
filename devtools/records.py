"""A Kafka record without Kafka: what the consumer's parsing and inbox look at."""


class Record:
    """Just enough of a confluent_kafka.Message (topic ``appointments``, partition 0).

    ``record`` holds ``key``, ``value`` and ``headers`` as the producer gave them.
    """

    def __init__(self, record: dict, offset: int):
        self._record, self._offset = record, offset

    def headers(self):
        return self._record["headers"]

    def value(self):
        return self._record["value"]

    def key(self):
        return self._record["key"]

    def topic(self):
        return "appointments"

    def partition(self):
        return 0

    def offset(self):
        return self._offset
