"""A PostgreSQL database of one's own for a run (benches, the chaos run)."""

from urllib.parse import urlparse, urlunparse


def maintenance_url(url: str) -> str:
    """The same server, database ``postgres``: to create, drop and fence another."""
    return urlunparse(urlparse(url)._replace(path="/postgres"))


def recreate_database(url: str) -> None:
    """Drop the database ``url`` names (whoever is connected) and create it empty."""
    import psycopg

    name = urlparse(url).path.lstrip("/")
    with psycopg.connect(maintenance_url(url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
