"""The gateway serves an unsharded database end to end: login as the users of Postgres,
statements, transactions, session state, errors exactly as Postgres sent them."""

from __future__ import annotations

import psycopg
import pytest

from .conftest import GatewayCluster, wait_until

pytestmark = pytest.mark.integration


def test_login_and_query(gw_cluster: GatewayCluster) -> None:
    with gw_cluster.connect() as conn:
        row = conn.execute("SELECT current_user, pg_is_in_recovery(), 1 + 1").fetchone()
        assert row == ("postgres", False, 2)
        assert conn.info.parameter_status("server_version") is not None
        assert conn.info.backend_pid > 0


def test_wrong_password_and_unknown_user(gw_cluster: GatewayCluster) -> None:
    with pytest.raises(psycopg.OperationalError) as e:
        psycopg.connect(gw_cluster.conninfo(password="wrong"))
    assert 'password authentication failed for user "postgres"' in str(e.value)
    with pytest.raises(psycopg.OperationalError) as e:
        psycopg.connect(gw_cluster.conninfo(user="nobody_here"))
    assert 'password authentication failed for user "nobody_here"' in str(e.value)


def test_unknown_database(gw_cluster: GatewayCluster) -> None:
    with pytest.raises(psycopg.OperationalError) as e:
        psycopg.connect(gw_cluster.conninfo(dbname="nosuchdb"))
    assert 'database "nosuchdb" does not exist' in str(e.value)


def test_backends_act_as_the_real_user(gw_cluster: GatewayCluster) -> None:
    """A role of Postgres logs in at the gateway with its own password; grants and
    row-level security apply as on Postgres directly."""
    with psycopg.connect(gw_cluster.primary.endpoint().conninfo(), autocommit=True) as pg:
        pg.execute("DROP TABLE IF EXISTS gw_rls")
        pg.execute("DROP ROLE IF EXISTS gw_alice")
        pg.execute("CREATE ROLE gw_alice LOGIN PASSWORD 'alice-pw'")
        pg.execute("CREATE TABLE gw_rls (owner text, v int)")
        pg.execute("INSERT INTO gw_rls VALUES ('gw_alice', 1), ('bob', 2)")
        pg.execute("ALTER TABLE gw_rls ENABLE ROW LEVEL SECURITY")
        pg.execute("CREATE POLICY own ON gw_rls USING (owner = current_user)")
        pg.execute("GRANT SELECT ON gw_rls TO gw_alice")
    with psycopg.connect(gw_cluster.conninfo(user="gw_alice", password="alice-pw"),
                         autocommit=True) as conn:
        assert conn.execute("SELECT current_user, session_user").fetchone() == (
            "gw_alice", "gw_alice")
        assert conn.execute("SELECT owner, v FROM gw_rls").fetchall() == [("gw_alice", 1)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM gw_rls")


def test_errors_keep_every_field(gw_cluster: GatewayCluster) -> None:
    with psycopg.connect(gw_cluster.primary.endpoint().conninfo(), autocommit=True) as pg:
        pg.execute("DROP TABLE IF EXISTS gw_err")
        pg.execute("CREATE TABLE gw_err (id int CONSTRAINT gw_err_pk PRIMARY KEY)")
        pg.execute("INSERT INTO gw_err VALUES (1)")
        with pytest.raises(psycopg.errors.UniqueViolation) as direct:
            pg.execute("INSERT INTO gw_err VALUES (1)")
    with gw_cluster.connect() as conn:
        with pytest.raises(psycopg.errors.UniqueViolation) as via:
            conn.execute("INSERT INTO gw_err VALUES (1)")
        d, v = direct.value.diag, via.value.diag
        for field in ("sqlstate", "severity", "message_primary", "message_detail",
                      "schema_name", "table_name", "constraint_name", "source_file",
                      "source_function"):
            assert getattr(v, field) == getattr(d, field), field
        with pytest.raises(psycopg.errors.SyntaxError) as syn:
            conn.execute("SELEC 1")
        assert syn.value.diag.statement_position == "1"
        assert conn.execute("SELECT 2").fetchone() == (2,)


def test_transactions_and_session_state(gw_cluster: GatewayCluster) -> None:
    with gw_cluster.connect() as conn:
        conn.execute("SET application_name = 'gw-app'")
        conn.execute("SET search_path = pg_catalog")
        with conn.transaction():
            conn.execute("CREATE TEMP TABLE gw_tmp (x int)")
            conn.execute("INSERT INTO gw_tmp VALUES (1), (2)")
        assert conn.execute("SELECT count(*) FROM gw_tmp").fetchone() == (2,)
        assert conn.execute("SHOW application_name").fetchone() == ("gw-app",)
        assert conn.execute("SHOW search_path").fetchone() == ("pg_catalog",)
        conn.autocommit = False
        conn.execute("INSERT INTO gw_tmp VALUES (3)")
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM gw_tmp").fetchone() == (2,)
        conn.commit()


def test_prepared_statements_copy_and_cursors(gw_cluster: GatewayCluster) -> None:
    with gw_cluster.connect() as conn:
        for i in range(8):  # psycopg prepares after 5 executions
            assert conn.execute("SELECT %s::int * 2", (i,)).fetchone() == (i * 2,)
        conn.execute("DROP TABLE IF EXISTS gw_copy")
        conn.execute("CREATE TABLE gw_copy (a int, b text)")
        with conn.cursor() as cur:
            with cur.copy("COPY gw_copy FROM STDIN") as copy:
                for i in range(1000):
                    copy.write_row((i, f"row {i}"))
            rows = []
            with cur.copy("COPY gw_copy TO STDOUT") as copy:
                for row in copy.rows():
                    rows.append(row)
            assert len(rows) == 1000
        conn.autocommit = False
        with conn.cursor(name="gw_server_side") as cur:
            cur.itersize = 100
            cur.execute("SELECT a FROM gw_copy ORDER BY a")
            assert sum(1 for _ in cur) == 1000
        conn.commit()


async def test_async_pipeline(gw_cluster: GatewayCluster) -> None:
    conn = await gw_cluster.aconnect()
    try:
        async with conn.pipeline():
            curs = [await conn.execute("SELECT %s::int", (i,)) for i in range(20)]
        assert [(await c.fetchone()) for c in curs] == [(i,) for i in range(20)]
    finally:
        await conn.close()


def test_replica_target(gw_cluster: GatewayCluster) -> None:
    def on_replica() -> bool:
        with gw_cluster.connect("postgres@replica") as conn:
            return conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)

    wait_until(on_replica, what="a @replica session on the replica")
    with psycopg.connect(gw_cluster.conninfo(options="-c multigres.target=replica"),
                         autocommit=True) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
        assert conn.execute("SELECT current_database()").fetchone() == ("postgres",)
    with gw_cluster.connect() as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)


def test_cancel(gw_cluster: GatewayCluster) -> None:
    import threading

    with gw_cluster.connect() as conn:
        threading.Timer(0.5, conn.cancel).start()
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(20)")
        assert conn.execute("SELECT 1").fetchone() == (1,)



def test_listen_notify(gw_cluster: GatewayCluster) -> None:
    with gw_cluster.connect() as listener, gw_cluster.connect() as sender:
        listener.execute("LISTEN gw_channel")
        sender.execute("NOTIFY gw_channel, 'hello'")
        sender.execute("SELECT pg_notify('gw_channel', 'again')")
        got = []
        for n in listener.notifies(timeout=5, stop_after=2):
            got.append(n.payload)
        assert got == ["hello", "again"]


def test_repeat_login_opens_its_pooler_connection_at_the_first_statement(
        gw_cluster: GatewayCluster) -> None:
    """The same user, database and parameters again: the gateway answers the login itself
    (same ParameterStatus), and the pooler sees the session only once it sends something."""
    from .test_local import pooler_clients

    def probes() -> int:
        return len([c for c in pooler_clients(gw_cluster, "zone1-gw1")
                    if c.get("application_name") == "lazy-probe"])

    first = gw_cluster.connect(application_name="lazy-probe")
    version = first.info.parameter_status("server_version")
    assert version
    first.execute("SELECT 1")
    first.close()  # its pooler connection is parked for the next session
    wait_until(lambda: probes() == 1, what="one pooler connection")
    s1 = gw_cluster.connect(application_name="lazy-probe")
    s2 = gw_cluster.connect(application_name="lazy-probe")
    try:
        assert s2.info.parameter_status("server_version") == version
        assert s2.info.parameter_status("application_name") == "lazy-probe"
        assert probes() == 1  # logged in, nothing sent yet: no pooler connection of their own
        assert s1.execute("SELECT 1").fetchone() == (1,)  # takes the parked one
        assert probes() == 1
        assert s2.execute("SHOW application_name").fetchone() == ("lazy-probe",)
        assert probes() == 2
    finally:
        s1.close()
        s2.close()


def test_ended_sessions_leave_their_pooler_connection_to_the_next(
        gw_cluster: GatewayCluster) -> None:
    """A session that ends clean parks its pooler connection; the next one with the same
    login takes it (no second login at the pooler), and finds none of the previous one's
    state. One that leaves state behind does not park."""
    from .test_local import pooler_clients

    def probes() -> list[dict[str, object]]:
        return [c for c in pooler_clients(gw_cluster, "zone1-gw1")
                if c.get("application_name") == "park-probe"]

    with gw_cluster.connect(application_name="park-probe") as a:
        a.execute("SELECT 1")
    wait_until(lambda: len(probes()) == 1, what="one parked pooler connection")
    with gw_cluster.connect(application_name="park-probe") as b:
        assert b.execute("SHOW search_path").fetchone() == ('"$user", public',)
        b.execute("SET search_path = pg_catalog")  # state: this one is not parked
        assert len(probes()) == 1  # it took the parked connection
    wait_until(lambda: len(probes()) == 0, what="the connection with state closed")
    with gw_cluster.connect(application_name="park-probe") as c:
        assert c.execute("SHOW search_path").fetchone() == ('"$user", public',)
