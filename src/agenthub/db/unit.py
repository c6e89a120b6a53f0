"""A unit of work on the database driver's own connection, for the hottest requests.

An ORM unit of work (`Database.transaction`) costs several times the statements it runs:
checking a connection out through SQLAlchemy's `Connection` and `Session`, a greenlet per
statement, compiling and caching lookups, building result objects (bench/hotpath.py: most of
a request's CPU time). A `Unit` takes a connection from the same pool and runs SQLAlchemy
Core statements on the driver itself (aiosqlite's inline connection, asyncpg), as `Prepared`
statements: compiled once per dialect, their parameters and results converted by the column
types' own processors, so values read and written are the ones the ORM would read and write.
Rows come back as dicts by column key.

Events and cache invalidations are recorded on `info`, as on an ORM session (`core.events`,
`agenthub.cache`), and handed on only after the commit. A failed unit rolls back; a connection
that cannot roll back is discarded rather than returned to the pool in an unknown state.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement
from sqlalchemy.types import TypeEngine

Row = dict[str, Any]
Processor = Callable[[Any], Any] | None


class Prepared:
    """A Core statement compiled for one dialect: its SQL, its parameters in order with their
    bind processors, and its result columns with their result processors."""

    def __init__(self, statement: ClauseElement, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        if not isinstance(compiled, SQLCompiler):
            raise TypeError(f"not a statement: {statement!r}")
        self.sql = compiled.string
        self.params: list[tuple[str, Any, Processor]] = [
            (
                name,
                compiled.binds[name].effective_value,
                compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect),
            )
            for name in compiled.positiontup or ()
        ]
        columns = getattr(statement, "exported_columns", ())
        self.columns: list[tuple[str, Processor]] = [
            (column.key, _result_processor(column.type, dialect)) for column in columns
        ]

    def args(self, values: Mapping[str, Any]) -> list[Any]:
        """The positional arguments for `values` by parameter name (unnamed: the statement's
        own values)."""
        args = []
        for name, default, process in self.params:
            value = values.get(name, default)
            args.append(value if process is None or value is None else process(value))
        return args

    def row(self, values: Sequence[Any]) -> Row:
        return {
            key: value if process is None or value is None else process(value)
            for (key, process), value in zip(self.columns, values, strict=True)
        }


def _result_processor(type_: TypeEngine[Any], dialect: Dialect) -> Processor:
    """The column type's conversion of a driver's value. One that depends on the type the
    server reports for the result (asyncpg's numerics) is not known before a result: the
    driver's own value is kept (asyncpg gives a float for `double precision`, as SQLAlchemy
    would)."""
    try:
        return type_.dialect_impl(dialect).result_processor(dialect, None)
    except (TypeError, InvalidRequestError):
        return None


class Statements:
    """`Prepared` statements of one dialect, each compiled on first use, and who is told how
    long each run took (the engine's own statements are timed by its events)."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.observers: list[Callable[[float], None]] = []
        self._prepared: dict[ClauseElement, Prepared] = {}

    def __getitem__(self, statement: ClauseElement) -> Prepared:
        prepared = self._prepared.get(statement)
        if prepared is None:
            prepared = self._prepared[statement] = Prepared(statement, self.dialect)
        return prepared


class Unit:
    """Statements on one driver connection (see the module); `Database.unit` makes one."""

    def __init__(self, driver: Any, statements: Statements) -> None:
        self.info: dict[str, Any] = {}
        self._driver = driver
        self._statements = statements
        self.postgres = statements.dialect.name == "postgresql"

    async def rows(self, statement: ClauseElement, values: Mapping[str, Any]) -> list[Row]:
        prepared = self._statements[statement]
        args = prepared.args(values)
        started = time.perf_counter()
        if self.postgres:
            found = await self._driver.fetch(prepared.sql, *args)
        else:
            found = await self._driver.execute_fetchall(prepared.sql, args)
        for observe in self._statements.observers:
            observe(time.perf_counter() - started)
        return [prepared.row(record) for record in found]

    async def execute(self, statement: ClauseElement, values: Mapping[str, Any]) -> None:
        await self.rows(statement, values)

    async def row(self, statement: ClauseElement, values: Mapping[str, Any]) -> Row | None:
        """The first row (the statement should select at most one)."""
        found = await self.rows(statement, values)
        return found[0] if found else None
