"""The rows of one plan operation (adds, removes or refreshes), in plan order, with memory bounded by a chunk.

An initial sync of ten million members plans ten million adds; as Python objects they would take
gigabytes. ``PlanRows`` keeps at most one chunk in memory and writes full chunks to Arrow IPC files in
a private folder (removed when the rows are dropped). It is a read-only ``Sequence`` for everything
downstream: ``len``, iteration, and the slices ``apply`` sends batch by batch.
"""

from __future__ import annotations

import bisect
import hashlib
import shutil
import tempfile
import weakref
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import overload

import pyarrow as pa
import pyarrow.compute as pc

from syncer.json_rows import dumps_many, loads

_SCHEMA = pa.schema([("member_key", pa.string()), ("raw_fp", pa.string()), ("identifiers", pa.string())])


@dataclass(frozen=True)
class PlannedRow:
    member_key: str
    raw_fp: str
    identifiers: dict[str, str]


class RowBatch(list):
    """A slice of plan rows (a plain ``list`` of ``PlannedRow``) that keeps each row's identifiers as the
    canonical JSON text the plan holds in Arrow (``texts``; None when some row was only in memory): the
    write-ahead record and the ledger store that text as it is instead of encoding every dict again."""

    texts: list[str] | None = None


class PlanRows(Sequence[PlannedRow]):
    """Append-only rows; with ``spill_dir`` every full chunk of ``chunk_rows`` goes to disk, and a table
    appended whole (``append_table``) becomes a chunk of its own, never turned into Python objects."""

    def __init__(self, rows: Iterable[PlannedRow] = (), *, spill_dir: Path | None = None, chunk_rows: int = 50_000) -> None:
        self._spill_dir = spill_dir
        self._chunk_rows = chunk_rows
        self._folder: Path | None = None
        self._files: list[Path] = []
        self._starts: list[int] = []  # the position of each file's first row
        self._spilled = 0
        self._tail: list[PlannedRow] = []
        # the last chunk read back (its rows and their identifiers' JSON text), for sequential slicing
        self._loaded: tuple[int, list[PlannedRow], list[str]] | None = None
        self._digest: tuple[str, int, bytes] | None = None
        self.extend(rows)

    def append(self, row: PlannedRow) -> None:
        self._tail.append(row)
        if self._spill_dir is not None and len(self._tail) >= self._chunk_rows:
            self._spill()

    def extend(self, rows: Iterable[PlannedRow]) -> None:
        for row in rows:
            self.append(row)

    def append_table(self, table: pa.Table) -> None:
        """Append rows given as a table of (member_key, raw_fp, identifiers as canonical JSON)."""
        if not table.num_rows:
            return
        if self._spill_dir is None:
            keys, fps, idents = (table.column(i).to_pylist() for i in range(3))
            self.extend(PlannedRow(k, f, loads(i)) for k, f, i in zip(keys, fps, idents))
            return
        if self._tail:
            self._spill()
        self._write(table.rename_columns(_SCHEMA.names).cast(_SCHEMA))

    def __len__(self) -> int:
        return self._spilled + len(self._tail)

    def __bool__(self) -> bool:
        return bool(self._files or self._tail)

    def __iter__(self) -> Iterator[PlannedRow]:
        for index in range(len(self._files)):
            yield from self._chunk(index)
        yield from self._tail

    @overload
    def __getitem__(self, index: int) -> PlannedRow: ...

    @overload
    def __getitem__(self, index: slice) -> list[PlannedRow]: ...

    def __getitem__(self, index: int | slice) -> PlannedRow | list[PlannedRow]:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                return list(self)[index]
            out = RowBatch()
            texts: list[str] | None = []
            position = start
            while position < stop:
                chunk, chunk_texts, offset = self._locate(position)
                taken = chunk[offset:offset + stop - position]
                out.extend(taken)
                texts = texts + chunk_texts[offset:offset + len(taken)] if texts is not None and chunk_texts is not None else None
                position += len(taken)
            out.texts = texts
            return out
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("plan row index out of range")
        chunk, _, offset = self._locate(index)
        return chunk[offset]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, (str, bytes)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    def __repr__(self) -> str:
        return f"PlanRows({len(self)} rows, {len(self._files)} chunks on disk)"

    def tables(self) -> Iterator[pa.Table]:
        """The rows as Arrow tables (member_key, raw_fp, identifiers as canonical JSON), chunk by chunk."""
        for index in range(len(self._files)):
            yield self._read(index)
        if self._tail:
            yield _table(self._tail)

    def without(self, member_keys: Iterable[str]) -> "PlanRows":
        """A copy without the rows of ``member_keys`` (kept in the same order, spilled the same way)."""
        drop = pa.array(sorted(set(member_keys)), pa.string())
        kept = PlanRows(spill_dir=self._spill_dir, chunk_rows=self._chunk_rows)
        for table in self.tables():
            kept.append_table(table.filter(pc.invert(pc.is_in(table.column(0), value_set=drop))))
        return kept

    def digest(self, op: str) -> bytes:
        """SHA-256 of the rows' canonical text under ``op``, for the plan's content hash; remembered until a
        row is appended (the rows are append-only, so the length says whether it is still right)."""
        if self._digest is None or self._digest[:2] != (op, len(self)):
            digest = hashlib.sha256()
            for table in self.tables():
                lines = pc.binary_join_element_wise(f"\n{op}", *table.columns, "\x1f")  # "\n{op}\x1f{key}\x1f{fp}\x1f{json}"
                digest.update("".join(lines.to_pylist()).encode())
            self._digest = (op, len(self), digest.digest())
        return self._digest[2]

    def _locate(self, position: int) -> tuple[list[PlannedRow], list[str] | None, int]:
        """The rows holding ``position``, their identifiers' JSON text (None for rows only in memory), the offset."""
        if position >= self._spilled:
            return self._tail, None, position - self._spilled
        index = bisect.bisect_right(self._starts, position) - 1
        self._chunk(index)
        return self._loaded[1], self._loaded[2], position - self._starts[index]

    def _chunk(self, index: int) -> list[PlannedRow]:
        if self._loaded is None or self._loaded[0] != index:
            table = self._read(index)
            keys, fps, idents = (table.column(n).to_pylist() for n in _SCHEMA.names)
            self._loaded = (index, [PlannedRow(k, f, loads(i)) for k, f, i in zip(keys, fps, idents)], idents)
        return self._loaded[1]

    def _read(self, index: int) -> pa.Table:
        with pa.memory_map(str(self._files[index])) as source:
            return pa.ipc.open_file(source).read_all()

    def _spill(self) -> None:
        table = _table(self._tail)
        self._tail = []
        self._write(table)

    def _write(self, table: pa.Table) -> None:
        if self._folder is None:
            self._spill_dir.mkdir(parents=True, exist_ok=True)
            self._folder = Path(tempfile.mkdtemp(prefix="plan-rows-", dir=self._spill_dir))
            weakref.finalize(self, shutil.rmtree, self._folder, True)
        path = self._folder / f"{len(self._files):06d}.arrow"
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, _SCHEMA) as writer:
            writer.write_table(table)
        self._files.append(path)
        self._starts.append(self._spilled)
        self._spilled += table.num_rows


def _table(rows: Sequence[PlannedRow]) -> pa.Table:
    return pa.table([[r.member_key for r in rows], [r.raw_fp for r in rows], dumps_many([r.identifiers for r in rows])],
                    schema=_SCHEMA)
