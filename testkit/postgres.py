"""The machine's PostgreSQL 15 cluster (`.ci/run` starts it) for tests: a throw-away login role, SQL as its
superuser. The tests run as root, as CI does."""

from __future__ import annotations

import contextlib
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

POSTGRES_CLUSTER = ("15", "main")


@dataclass(frozen=True)
class Role:
    """A login role with CREATEDB; `url()` names its own database on the cluster (made on first use)."""

    name: str
    password: str
    port: int

    def url(self, database: str | None = None) -> str:
        return f"postgresql://{self.name}:{self.password}@127.0.0.1:{self.port}/{database or self.name}"


def psql(sql: str, database: str = "postgres") -> str:
    """Run SQL as the cluster's superuser; its output, trimmed."""
    done = subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-d", database, "-tAc", sql],
                          capture_output=True, text=True, cwd="/")
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@contextlib.contextmanager
def postgres_role() -> Iterator[Role]:
    """A new login role with CREATEDB on the local cluster (started if it is down, stopped again after); on exit
    the databases `fineforge server start --database-url` made of its name (`<role>`, `<role>_mlflow`) are
    dropped, then the role."""
    version, cluster = POSTGRES_CLUSTER
    was_down = subprocess.run(["pg_ctlcluster", version, cluster, "status"], capture_output=True).returncode != 0
    if was_down:
        subprocess.run(["pg_ctlcluster", version, cluster, "start"], check=True)
    role = Role(f"fineforge_{secrets.token_hex(4)}", secrets.token_hex(8), int(psql("SHOW port")))
    psql(f"CREATE ROLE {role.name} LOGIN CREATEDB PASSWORD '{role.password}'")
    try:
        yield role
    finally:
        for database in (role.name, f"{role.name}_mlflow"):
            psql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        psql(f"DROP ROLE {role.name}")
        if was_down:
            subprocess.run(["pg_ctlcluster", version, cluster, "stop"], check=True)
