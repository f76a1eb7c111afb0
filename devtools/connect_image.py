"""What Debezium's Connect image (``quay.io/debezium/connect``) makes of a container's
environment.

The rule, as in debezium/container-images ``connect-base/3.6/docker-entrypoint.sh``:
BOOTSTRAP_SERVERS, GROUP_ID, CONFIG_STORAGE_TOPIC, OFFSET_STORAGE_TOPIC,
STATUS_STORAGE_TOPIC, KEY_CONVERTER, VALUE_CONVERTER and a few more are exported
as ``CONNECT_*`` first; then every variable whose name starts with ``CONNECT_``
(but ``CONNECT_LOG4J*``, which goes to the log configuration) is one line of
``connect-distributed.properties``: the name without ``CONNECT_``, lower-cased, each
``_`` made ``.``. Nothing else reaches the worker: a variable such as
``CONFIG_STORAGE_REPLICATION_FACTOR`` is ignored, and the shipped file's value (1)
stays. The entrypoint prints each property it sets, except those named in
SENSITIVE_PROPERTIES (the worker's, producer's and consumer's ``sasl.jaas.config``
and SSL passwords; not ``admin.*``).
"""

from collections.abc import Mapping

EXPORTED = {
    "BOOTSTRAP_SERVERS": "CONNECT_BOOTSTRAP_SERVERS",
    "GROUP_ID": "CONNECT_GROUP_ID",
    "CONFIG_STORAGE_TOPIC": "CONNECT_CONFIG_STORAGE_TOPIC",
    "OFFSET_STORAGE_TOPIC": "CONNECT_OFFSET_STORAGE_TOPIC",
    "STATUS_STORAGE_TOPIC": "CONNECT_STATUS_STORAGE_TOPIC",
    "KEY_CONVERTER": "CONNECT_KEY_CONVERTER",
    "VALUE_CONVERTER": "CONNECT_VALUE_CONVERTER",
    "OFFSET_FLUSH_INTERVAL_MS": "CONNECT_OFFSET_FLUSH_INTERVAL_MS",
    "OFFSET_FLUSH_TIMEOUT_MS": "CONNECT_OFFSET_FLUSH_TIMEOUT_MS",
}
SENSITIVE = frozenset(
    {
        "CONNECT_SASL_JAAS_CONFIG",
        "CONNECT_CONSUMER_SASL_JAAS_CONFIG",
        "CONNECT_PRODUCER_SASL_JAAS_CONFIG",
        "CONNECT_SSL_KEYSTORE_PASSWORD",
        "CONNECT_PRODUCER_SSL_KEYSTORE_PASSWORD",
        "CONNECT_SSL_TRUSTSTORE_PASSWORD",
        "CONNECT_PRODUCER_SSL_TRUSTSTORE_PASSWORD",
        "CONNECT_SSL_KEY_PASSWORD",
        "CONNECT_PRODUCER_SSL_KEY_PASSWORD",
        "CONNECT_CONSUMER_SSL_TRUSTSTORE_PASSWORD",
        "CONNECT_CONSUMER_SSL_KEYSTORE_PASSWORD",
        "CONNECT_CONSUMER_SSL_KEY_PASSWORD",
    }
)


def worker_properties(env: Mapping[str, str]) -> dict[str, str]:
    """The properties the image's entrypoint adds to connect-distributed.properties."""
    variables = dict(env)
    for short, long in EXPORTED.items():
        if short in variables:
            variables[long] = variables[short]
    return {
        name.removeprefix("CONNECT_").lower().replace("_", "."): str(value)
        for name, value in variables.items()
        if name.startswith("CONNECT_") and not name.startswith("CONNECT_LOG4J")
    }


def logged_secrets(env: Mapping[str, str]) -> list[str]:
    """Variables holding a password that the entrypoint would print in its log."""
    return sorted(
        name
        for name, value in env.items()
        if name.startswith("CONNECT_")
        and name not in SENSITIVE
        and ("password" in str(value).lower() or name.endswith("PASSWORD"))
    )
