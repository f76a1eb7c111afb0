"""Production security: `check --deploy` is clean; Kafka security reaches every client."""

import ast
import subprocess
import sys

import pytest

from messaging import config as kafka
from tests.conftest import ROOT

PRODUCTION = {
    "DJANGO_DEBUG": "0",
    "DEMO_MODE": "0",
    "DJANGO_SECRET_KEY": "k9$Qe2!vXh7Lp0rWz4^Ty8&Nb3@Mc6*Jd1%Ga5+Fs-Ru_Io=Pk)Ul(Ye?Hw",
    "DJANGO_ALLOWED_HOSTS": "clinic.example.org",
    "DATABASE_URL": "sqlite:////tmp/healthcare-check-deploy.sqlite3",
}


def manage(*args, env: dict) -> subprocess.CompletedProcess:
    base = {
        k: v
        for k, v in __import__("os").environ.items()
        if not k.startswith(("DJANGO_", "KAFKA_"))
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_deploy_is_clean_with_production_settings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_check_deploy_warns_when_https_redirect_is_switched_off():
    env = {**PRODUCTION, "DJANGO_SECURE_SSL_REDIRECT": "0"}
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode != 0
    assert "security.W008" in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "KAFKA_SASL_USERNAME is required"),
        (
            {"KAFKA_SECURITY_PROTOCOL": "TLS"},
            "KAFKA_SECURITY_PROTOCOL='TLS' is not one of",
        ),
        (
            {
                "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "KAFKA_SASL_USERNAME": "u",
                "KAFKA_SASL_MECHANISM": "MD5",
            },
            "KAFKA_SASL_MECHANISM='MD5' is not one of",
        ),
    ],
)
def test_bad_kafka_security_settings_stop_start_up_naming_the_variable(env, message):
    result = manage("check", env={**PRODUCTION, **env})
    assert result.returncode != 0
    assert message in result.stderr


SASL_SSL = {
    "SECURITY_PROTOCOL": "SASL_SSL",
    "SASL_MECHANISM": "SCRAM-SHA-512",
    "SASL_USERNAME": "healthcare",
    "SASL_PASSWORD": "s3cret",
    "SSL_CA_LOCATION": "/etc/kafka/ca.pem",
}
EXPECTED = {
    "security.protocol": "SASL_SSL",
    "sasl.mechanism": "SCRAM-SHA-512",
    "sasl.username": "healthcare",
    "sasl.password": "s3cret",
    "ssl.ca.location": "/etc/kafka/ca.pem",
}


def test_every_client_kind_gets_the_security_settings(settings):
    settings.KAFKA = {**settings.KAFKA, **SASL_SSL}
    for config in (
        kafka.producer_config(),
        kafka.consumer_config("group"),
        kafka.admin_config(),
        kafka.producer_config(**{"linger.ms": 0}),
    ):
        assert {k: config[k] for k in EXPECTED} == EXPECTED


def test_plaintext_clients_get_no_sasl_settings(settings):
    settings.KAFKA = {
        **settings.KAFKA,
        "SECURITY_PROTOCOL": "PLAINTEXT",
        "SSL_CA_LOCATION": "",
    }
    config = kafka.admin_config()
    assert config["security.protocol"] == "PLAINTEXT"
    assert not any(k.startswith(("sasl.", "ssl.")) for k in config)


CLIENTS = {
    "Producer",
    "Consumer",
    "AdminClient",
    "SerializingProducer",
    "DeserializingConsumer",
}


def client_constructions():
    """Every Kafka client built in the project's code, with its configuration argument."""
    for path in sorted(ROOT.glob("*/**/*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in {"tests", "bench", "scripts", "devtools", ".venv", "var"}:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", None) or getattr(
                    node.func, "attr", None
                )
                if name in CLIENTS:
                    yield f"{rel}:{node.lineno}", node


def builds_config_from_settings(node: ast.Call) -> bool:
    """The first argument is a messaging.config builder, possibly extended with `|`."""
    if not node.args:
        return False
    arg = node.args[0]
    while isinstance(arg, ast.BinOp) and isinstance(arg.op, ast.BitOr):
        arg = arg.left
    if not isinstance(arg, ast.Call):
        return False
    func = arg.func
    name = getattr(func, "attr", None) or getattr(func, "id", None)
    return name in {
        "producer_config",
        "consumer_config",
        "admin_config",
        "common_config",
    }


def test_every_kafka_client_in_the_code_is_built_from_the_shared_config():
    found = dict(client_constructions())
    assert any(p.startswith("relay") for p in found), (
        "the scan must see the relay's clients"
    )
    assert any(p.startswith("notifications") for p in found)
    unsafe = [
        where for where, node in found.items() if not builds_config_from_settings(node)
    ]
    assert unsafe == [], (
        f"clients not built by messaging.config (no security settings): {unsafe}"
    )
