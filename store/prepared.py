"""Reads compiled to SQL once per process and run again with another value: the busiest pages'
queries, whose only varying value is the organisation.

Django compiles a queryset to SQL each time it is evaluated. For the small indexed reads of the
portal's pages, compiling costs about what the database takes to answer (a subscription with
its plan and card: 0.34 ms to compile, 0.36 ms to run, 2-core VM). A `Prepared` read compiles
once per process and database, with a placeholder where the value goes, keeps the SQL, and
builds its rows as the queryset would: model instances with their `select_related` objects, or
dicts for `.values()`.

Only for a queryset whose SQL is the same for every value: no time, no list of varying length,
no per-request filter; anything else is a queryset built per request.
`tests/store/test_prepared.py` holds every prepared read equal to its queryset's answer, so a
Django upgrade that changes the compiler's shape fails a test rather than a page.
"""
from collections.abc import Callable
from typing import Any

from django.db import connections, router
from django.db.models import QuerySet
from django.db.models.query import ModelIterable, ValuesIterable, get_related_populators

# Stands in for the value while compiling; found among the compiled parameters, then replaced.
PLACEHOLDER = -724_109_337


class Prepared:
    """`build(value)` → the queryset for one value; `prepared(value)` → its rows as a list."""

    every: list["Prepared"] = []  # each one made, for the test that holds them to their queryset

    def __init__(self, build: Callable[[Any], QuerySet]):
        self.build = build
        self.model = None  # the queryset's, known at the first call
        self._compiled: dict[str, _Compiled] = {}  # per database alias (a replica has its own)
        Prepared.every.append(self)

    def __call__(self, value) -> list:
        return self._compile().run(value)

    def rows(self, value, count: Callable[[], int]) -> "PreparedRows":
        """The rows for `value` as a Paginator's object list: `count()` says how many there
        are, and each page is read with LIMIT and OFFSET on the kept SQL (the queryset must
        not be sliced itself)."""
        return PreparedRows(self._compile(), value, count)

    def _compile(self) -> "_Compiled":
        """The SQL for the database the routers send this read to now (two threads may both
        compile it: the same result)."""
        queryset = None
        if self.model is None:
            queryset = self.build(PLACEHOLDER)
            self.model = queryset.model
        alias = router.db_for_read(self.model)
        if (compiled := self._compiled.get(alias)) is None:
            queryset = (self.build(PLACEHOLDER) if queryset is None else queryset).using(alias)
            compiled = self._compiled[alias] = _Compiled(queryset)
        return compiled


class PreparedRows:
    """What Django's Paginator needs of an object list: count() and a slice."""

    def __init__(self, compiled: "_Compiled", value, count: Callable[[], int]):
        self.compiled, self.value, self._count = compiled, value, count

    def count(self) -> int:
        return self._count()

    def __getitem__(self, page: slice) -> list:
        if page.stop <= page.start:  # an empty list's first page: nothing to ask
            return []
        return self.compiled.run(self.value, limit=page.stop - page.start, offset=page.start)


class _Compiled:
    def __init__(self, queryset: QuerySet):
        self.alias = queryset.db
        compiler = queryset.query.get_compiler(using=self.alias)
        self.sql, params = compiler.as_sql()
        self.params = list(params)
        self.slots = [i for i, param in enumerate(self.params) if param == PLACEHOLDER]
        if not self.slots:
            raise ValueError(f"the placeholder is not among the compiled parameters: {self.sql}")
        self.compiler = compiler  # kept to build rows (its select list, converters), never run
        self.sliced = queryset.query.is_sliced
        if queryset._iterable_class is ValuesIterable:
            query = queryset.query
            self.names = [*query.extra_select, *query.values_select, *query.annotation_select]
            self.build_row = self._values_row
        elif queryset._iterable_class is ModelIterable and not queryset._prefetch_related_lookups:
            info = compiler.klass_info
            fields = info["select_fields"]
            self.model = info["model"]
            self.start, self.end = fields[0], fields[-1] + 1
            self.attnames = [column[0].target.attname
                             for column in compiler.select[self.start:self.end]]
            self.populators = get_related_populators(info, compiler.select, self.alias)
            self.annotations = list((compiler.annotation_col_map or {}).items())
            self.build_row = self._model_row
        else:
            raise TypeError("a prepared read returns model instances or values() dicts")

    def run(self, value, *, limit: int | None = None, offset: int = 0) -> list:
        params = self.params.copy()
        for slot in self.slots:
            params[slot] = value
        sql = self.sql
        if limit is not None:
            if self.sliced:
                raise TypeError("a prepared read that is sliced already cannot be paged")
            sql, params = f"{sql} LIMIT %s OFFSET %s", [*params, limit, offset]
        with connections[self.alias].cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        return [self.build_row(row) for row in self.compiler.results_iter([rows])]

    def _values_row(self, row) -> dict:
        return dict(zip(self.names, row, strict=True))

    def _model_row(self, row):
        obj = self.model.from_db(self.alias, self.attnames, row[self.start:self.end])
        for populator in self.populators:
            populator.populate(row, obj)
        for name, position in self.annotations:
            setattr(obj, name, row[position])
        return obj
