"""The lead load's SQL, in the driver's own parameter style, for SQLite and PostgreSQL.

The hot path skips SQLAlchemy's per-row parameter processing; on PostgreSQL a
batch is copied into a temporary table and inserted from there in one
statement, on SQLite the values shared by every lead are written into the
statement once.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from dialer.errors import UserError
from dialer.models import DncNumber, Lead, LeadState


# SQLite page cache during a load, KiB.
SQLITE_CACHE_KIB = 64 * 1024


_INSERT_COLUMNS = (
    "campaign_id", "phone_e164", "first_name", "last_name", "timezone", "region",
    "rules_region", "postal_code", "state", "priority", "attempts", "next_attempt_at", "custom",
    "source_file", "source_line", "created_at",
)


# What varies per lead, in the order of a row tuple (and of the COPY columns).
ROW_COLUMNS = (
    "phone_e164", "first_name", "last_name", "timezone", "region", "rules_region", "postal_code",
    "priority", "custom", "source_line",
)


# PostgreSQL staging table: one column per item of a row tuple.
_PG_STAGING_TABLE = "dialer_lead_load"


_PG_STAGING = (
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {_PG_STAGING_TABLE} (phone text, first_name text,"
    " last_name text, timezone text, region text, rules_region text, postal_code text,"
    " priority int, custom text,"
    " line int) ON COMMIT DROP"
)


_PG_COPY = (
    f"COPY {_PG_STAGING_TABLE} (phone, first_name, last_name, timezone, region, rules_region,"
    " postal_code,"
    " priority, custom, line) FROM STDIN"
)


_PG_INSERT = (
    f"INSERT INTO {Lead.__tablename__} ({', '.join(_INSERT_COLUMNS)})"
    " SELECT %s, phone, first_name, last_name, timezone, region, rules_region, postal_code,"
    " %s, priority, 0, %s, custom::jsonb, %s, line, %s"
    f" FROM {_PG_STAGING_TABLE} ORDER BY line"
    " ON CONFLICT (campaign_id, phone_e164) DO NOTHING"
)


def _sqlite_literal(value: Any) -> str:
    """A SQL literal for SQLite: an integer, or a string with its quotes doubled."""
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        if "\x00" in value:
            raise UserError(f"{value!r}: contains a NUL character")
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f"no SQLite literal for {value!r}")


class LoadStatements:
    """The load's statements, in the driver's own parameter style.

    The hot path skips SQLAlchemy's per-row parameter processing: values are
    given as tuples already in the form the driver stores (timestamps through
    the dialect's own DateTime processor, JSON as text).
    """

    def __init__(self, conn, campaign_id: int, load_time: dt.datetime, source: str) -> None:
        dialect = conn.dialect
        if dialect.name not in ("sqlite", "postgresql"):  # pragma: no cover
            raise UserError(f"unsupported database {dialect.name!r}")
        self.conn = conn
        self.campaign_id = campaign_id
        self.sqlite = dialect.name == "sqlite"
        mark = "?" if self.sqlite else "%s"
        process = sa.DateTime().dialect_impl(dialect).bind_processor(dialect)
        # The load time as the driver stores it, and as it reads it back.
        self.load_time = process(load_time) if process else load_time
        self._mark = mark
        self._source = source
        if self.sqlite:
            # The values shared by every lead of the load are written into the
            # statement once (as quoted literals) instead of bound per row.
            constants = {
                "campaign_id": int(campaign_id),
                "state": LeadState.NEW.value,
                "attempts": 0,
                "next_attempt_at": self.load_time,
                "source_file": source,
                "created_at": self.load_time,
            }
            values = [
                _sqlite_literal(constants[c]) if c in constants else "?" for c in _INSERT_COLUMNS
            ]
            self.insert = (
                f"INSERT INTO {Lead.__tablename__} ({', '.join(_INSERT_COLUMNS)})"
                f" VALUES ({', '.join(values)})"
                " ON CONFLICT (campaign_id, phone_e164) DO NOTHING"
            )
        self._pg_staging = False
        self._cache_size = None
        if self.sqlite:
            # A bigger page cache for the load keeps the unique index's pages in
            # memory while numbers arrive in random order (bounded: 64 MiB).
            self._cache_size = conn.exec_driver_sql("PRAGMA cache_size").scalar()
            conn.exec_driver_sql(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")

    def close(self) -> None:
        if self._cache_size is not None:
            self.conn.exec_driver_sql(f"PRAGMA cache_size = {int(self._cache_size)}")

    def _in(self, phones: list[str]) -> tuple[str, Any]:
        if self.sqlite:
            return f"IN ({', '.join(['?'] * len(phones))})", tuple(phones)
        return "= ANY(%s)", (phones,)

    def campaign_has_leads(self) -> bool:
        sql = f"SELECT 1 FROM {Lead.__tablename__} WHERE campaign_id = {self._mark} LIMIT 1"
        return self.conn.exec_driver_sql(sql, (self.campaign_id,)).first() is not None

    def dnc_list_empty(self) -> bool:
        sql = f"SELECT 1 FROM {DncNumber.__tablename__} LIMIT 1"
        return self.conn.exec_driver_sql(sql).first() is None

    def dnc(self, phones: list[str]) -> set[str]:
        if not phones:
            return set()
        clause, params = self._in(phones)
        sql = f"SELECT phone_e164 FROM {DncNumber.__tablename__} WHERE phone_e164 {clause}"
        return {row[0] for row in self.conn.exec_driver_sql(sql, params)}

    def existing(self, phones: list[str]) -> dict[str, tuple[Any, Any, Any]]:
        if not phones:
            return {}
        clause, params = self._in(phones)
        sql = (
            f"SELECT phone_e164, source_file, source_line, created_at FROM {Lead.__tablename__}"
            f" WHERE campaign_id = {self._mark} AND phone_e164 {clause}"
        )
        params = (self.campaign_id, *params)
        return {row[0]: (row[1], row[2], row[3]) for row in self.conn.exec_driver_sql(sql, params)}

    def insert_rows(self, rows: list[tuple]) -> None:
        if self.sqlite:
            self.conn.exec_driver_sql(self.insert, rows)
            return
        # PostgreSQL: COPY the batch into a temporary table, then one INSERT …
        # SELECT with ON CONFLICT (a row-by-row executemany costs a server
        # round of bind/execute per lead; COPY's rows are formatted in C).
        raw = self.conn.connection.driver_connection
        with raw.cursor() as cur:
            if not self._pg_staging:
                cur.execute(_PG_STAGING)
                self._pg_staging = True
            with cur.copy(_PG_COPY) as copy:
                write_row = copy.write_row
                for row in rows:
                    write_row(row)
            cur.execute(
                _PG_INSERT,
                (self.campaign_id, LeadState.NEW.value, self.load_time, self._source, self.load_time),
            )
            cur.execute(f"TRUNCATE {_PG_STAGING_TABLE}")
