"""Read one project folder into config models, collecting every problem instead of stopping at the first.

``ProjectLoader(root).load()`` reads ``syncer.yml`` and each file of ``segments/``, ``destinations/``
and ``syncs/``: YAML with lines (``syncer.project.yaml_source``), secrets (``syncer.project.secrets``), then
the pydantic model, whose errors ``syncer.project.messages`` rewrites. It then checks the files
against each other: file names, a segment's ``sql_file``, that a sync's segment and destination
exist, its identifiers are mapped by the segment, its mode fits the destination, no two syncs
share one audience, and every segment a conversion rule names exists. Environment variables the files
refer to that are not set are kept apart as ``warnings`` (``syncer.project.env_refs``): they may be set
where syncs run. ``syncer.project.project.load_project`` wraps this and raises ``InvalidProjectError``.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from destinations.registry import capabilities_of
from syncer.project.config import ConversionSource, DestinationConfig, ProjectConfig, SegmentConfig, SyncConfig
from syncer.project.env_refs import unset_variables
from syncer.project.files import (
    DESTINATION,
    NAME,
    PROJECT,
    PROJECT_FILE_NAMES,
    SEGMENT,
    SYNC,
    YAML_SUFFIXES,
    FileKind,
    adapter,
    expected_keys,
)
from syncer.project.messages import validation_problems
from syncer.project.problems import Problem, dotted, quote
from syncer.project.secrets import secret_problems
from syncer.project.yaml_source import YamlDoc, read_doc

__all__ = ["ProjectLoader", "ProjectParts"]


@dataclass(frozen=True)
class ProjectParts:
    """The validated models of a project folder with no problems; ``syncer.project.project.Project`` wraps them."""

    config: ProjectConfig
    segments: dict[str, SegmentConfig]
    destinations: dict[str, DestinationConfig]
    syncs: dict[str, SyncConfig]


@dataclass
class _Loaded:
    doc: YamlDoc
    model: Any  # None when the file is invalid


class ProjectLoader:
    """Collects every problem of one project folder while building its models."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []  # unset environment variables: fine here, needed where syncs run
        self._project_doc: YamlDoc | None = None
        self._diff_mode = "local"  # syncer.yml's, once read: syncs with traits need the local diff
        self.valid_parts: ProjectParts | None = None  # every valid file, even when others have problems
        self.present: dict[str, set[str]] = {}  # folder -> every name that has a file, valid or not

    def load(self) -> ProjectParts | None:
        """Every model of the folder, or None when there is any problem (they are in ``self.problems``)."""
        config = self._load_project_file()
        segments = self._load_folder(SEGMENT)
        destinations = self._load_folder(DESTINATION)
        syncs = self._load_folder(SYNC)
        for name, loaded in segments.items():
            if loaded.model is not None:
                self._check_sql_file(loaded)
        self._check_syncs(syncs, segments, destinations)
        if config is not None and config.conversions is not None:
            self._check_rule_segments(config.conversions)
        if config is not None and config.serve is not None:
            self._check_serve_destinations(config, destinations)
        if config is not None:
            self._check_realtime_segments(segments, config)
            self._check_dbt_models(segments, config)
            self.valid_parts = ProjectParts(
                config=config,
                segments={name: item.model for name, item in segments.items() if item.model is not None},
                destinations={name: item.model for name, item in destinations.items() if item.model is not None},
                syncs={name: item.model for name, item in syncs.items() if item.model is not None},
            )
        return None if self.problems else self.valid_parts

    def _load_project_file(self) -> ProjectConfig | None:
        found = [name for name in PROJECT_FILE_NAMES if (self.root / name).is_file()]
        if not found:
            message = "no syncer.yml in the project folder; create one with at least 'warehouse_url: duckdb:///warehouse.duckdb'"
            self.problems.append(Problem("syncer.yml", None, "", message))
            return None
        for extra in found[1:]:
            self.problems.append(Problem(extra, None, "", f"both {found[0]} and {extra} exist; keep one"))
        loaded = self._load_file(self.root / found[0], PROJECT)
        self._project_doc = loaded.doc if loaded else None
        self._diff_mode = loaded.model.diff_mode if loaded and loaded.model else "local"
        return loaded.model if loaded else None

    def _load_folder(self, kind: FileKind) -> dict[str, _Loaded]:
        folder = self.root / kind.folder
        names = self.present.setdefault(kind.folder, set())
        result: dict[str, _Loaded] = {}
        files = sorted(folder.iterdir()) if folder.is_dir() else []
        for path in files:
            if path.name.startswith(".") or path.suffix not in YAML_SUFFIXES or not path.is_file():
                continue
            file, name = f"{kind.folder}/{path.name}", path.stem
            if name in names:
                message = f"another file in {kind.folder}/ already defines the {kind.noun} '{name}'; keep one"
                self.problems.append(Problem(file, None, "", message))
                continue
            names.add(name)
            valid_name = self._check_name(file, name, kind)
            loaded = self._load_file(path, kind)
            if loaded is not None and valid_name:
                result[name] = loaded
        return result

    def _check_name(self, file: str, name: str, kind: FileKind) -> bool:
        if NAME.match(name):
            return True
        fixed = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_") or kind.noun
        fixed = fixed if fixed[0].isalpha() else f"{kind.noun}_{fixed}"
        message = (
            f"'{name}' is not a valid {kind.noun} name (the file name is the name): use lowercase letters,"
            f" digits and _, starting with a letter, e.g. '{fixed}{Path(file).suffix}'"
        )
        self.problems.append(Problem(file, None, "", message))
        return False

    def _load_file(self, path: Path, kind: FileKind) -> _Loaded | None:
        file = path.relative_to(self.root).as_posix()
        doc = read_doc(path, file, self.problems, partial(expected_keys, kind))
        if doc is None:
            return None
        secrets, claimed = secret_problems(doc, kind.schema)
        claimed |= doc.unreadable
        self.problems.extend(secrets)
        try:
            model = adapter(kind.schema).validate_python(doc.data)
        except ValidationError as exc:
            self.problems.extend(validation_problems(doc, kind, exc, claimed))
            model = None
        if model is not None:
            self.warnings.extend(unset_variables(doc))
        return _Loaded(doc, model)

    def _check_realtime_segments(self, segments: dict[str, _Loaded], config: ProjectConfig) -> None:
        """`events:` needs an events source, and (like ``expires_at``) a query whose rows decide each member alone."""
        from syncer.project.realtime_checks import restriction_problem

        for loaded in segments.values():
            segment: SegmentConfig = loaded.model
            if segment is None or not (segment.events or segment.expires_at):
                continue
            field = "events" if segment.events else "expires_at"
            if segment.events and config.events is None:
                message = ("this segment listens to events but syncer.yml has no `events:` source; add one (table,"
                           " member_key_column, type_column, time_column) or remove `events:`")
                self.problems.append(Problem(loaded.doc.file, loaded.doc.line(("events",)), "events", message))
            sql = segment.sql
            if segment.sql_file and (self.root / "segments" / segment.sql_file).is_file():
                sql = (self.root / "segments" / segment.sql_file).read_text(encoding="utf-8-sig")
            why = restriction_problem(sql) if sql else None
            if why:
                self.problems.append(Problem(loaded.doc.file, loaded.doc.line((field,)), field, why))

    def _check_sql_file(self, loaded: _Loaded) -> None:
        segment: SegmentConfig = loaded.model
        if not segment.sql_file:
            return
        doc = loaded.doc
        target = (self.root / "segments" / segment.sql_file)
        shown = os.path.relpath(target, self.root).replace(os.sep, "/")
        line = doc.line(("sql_file",))
        if not target.is_file():
            message = f"sql file '{segment.sql_file}' not found (looked for {shown}; sql_file is relative to the segment file)"
            self.problems.append(Problem(doc.file, line, "sql_file", message))
            return
        try:
            text = target.read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError:
            self.problems.append(Problem(doc.file, line, "sql_file", f"{shown} is not UTF-8 text; save it as UTF-8"))
            return
        if not text.strip():
            self.problems.append(Problem(doc.file, line, "sql_file", f"{shown} is empty; it must hold the segment's query"))
            loaded.model = None

    def _check_syncs(self, syncs: dict[str, _Loaded], segments: dict[str, _Loaded], destinations: dict[str, _Loaded]) -> None:
        audiences: dict[tuple[str, str], str] = {}
        for loaded in syncs.values():
            sync: SyncConfig | None = loaded.model
            if sync is None:
                continue
            doc = loaded.doc
            self._check_reference(doc, "segment", sync.segment, SEGMENT)
            self._check_reference(doc, "destination", sync.destination, DESTINATION)
            segment = segments.get(sync.segment)
            if segment is not None and segment.model is not None:
                self._check_identifiers(doc, sync, sync.segment, segment.model)
            self._check_mode(doc, sync, destinations.get(sync.destination))
            self._check_accepted_identifiers(doc, sync, destinations.get(sync.destination))
            self._check_traits(doc, sync, destinations.get(sync.destination))
            key = (sync.destination, sync.audience_id)
            if sync.audience_id is None:
                continue
            if key in audiences:
                message = (
                    f"audience '{sync.audience_id}' of destination '{sync.destination}' is already synced by"
                    f" {audiences[key]}; two syncs on one audience would remove each other's members"
                    " (combine the segments, or use another audience)"
                )
                self.problems.append(Problem(doc.file, doc.line(("audience_id",)), "audience_id", message))
            else:
                audiences[key] = doc.file

    def _check_mode(self, doc: YamlDoc, sync: SyncConfig, destination: "_Loaded | None") -> None:
        """Sends that cannot be taken back (texts) only make sense once per entry; lists never do."""
        config = getattr(destination, "model", None)
        if config is None:
            return
        once = capabilities_of(config).at_most_once
        if once != (sync.mode == "trigger"):
            expected = (f"'trigger' ({config.type} sends cannot be taken back: it contacts each member once when they"
                        " enter the segment)" if once else
                        "'mirror' or 'add_only' ('trigger' is for destinations whose sends cannot be taken back)")
            self.problems.append(Problem(doc.file, doc.line(("mode",)) or 1, "mode",
                                         f"mode '{sync.mode}' does not fit a {config.type} destination; expected {expected}"))

    def _check_accepted_identifiers(self, doc: YamlDoc, sync: SyncConfig, destination: "_Loaded | None") -> None:
        """An identifier the destination cannot take would be dropped silently at run time: say so now."""
        config = getattr(destination, "model", None)
        if config is None:
            return
        accepted = capabilities_of(config).identifiers
        for index, identifier in enumerate(sync.identifiers):
            if identifier in accepted:
                continue
            path = ("identifiers", index)
            message = (f"destination '{sync.destination}' ({config.type}) does not take identifier '{identifier}':"
                       f" remove it from 'identifiers' (it takes: {', '.join(sorted(accepted))})")
            self.problems.append(Problem(doc.file, doc.line(path), dotted(path), message))

    def _check_traits(self, doc: YamlDoc, sync: SyncConfig, destination: "_Loaded | None") -> None:
        """Traits are profile properties: only destinations that keep profiles take them, and only the local diff
        sends them (the warehouse diff's fingerprints would need each engine's JSON rendering of a value)."""
        config = getattr(destination, "model", None)
        if not sync.traits or config is None:
            return
        line = doc.line(("traits",))
        if not capabilities_of(config).traits:
            message = (f"destination '{sync.destination}' ({config.type}) keeps no profile properties, so it takes no"
                       " traits: remove 'traits' (email tools take them: klaviyo_list, braze, iterable_list, mailchimp_audience)")
            self.problems.append(Problem(doc.file, line, "traits", message))
        elif self._diff_mode == "warehouse":
            message = ("traits are not sent with diff_mode: warehouse (only the local diff fingerprints them): set"
                       " diff_mode: local in syncer.yml, or remove 'traits' from this sync")
            self.problems.append(Problem(doc.file, line, "traits", message))

    def _check_rule_segments(self, source: ConversionSource) -> None:
        """A rule naming a segment no file defines would suppress nobody from it, silently."""
        doc = self._project_doc
        present = self.present.get(SEGMENT.folder, set())
        for r, rule in enumerate(source.rules):
            for s, name in enumerate(rule.segments):
                if name == "*" or name in present:
                    continue
                path = ("conversions", "rules", r, "segments", s)
                close = difflib.get_close_matches(name, sorted(present), n=1, cutoff=0.6)
                did_you_mean = f"; did you mean '{close[0]}'?" if close else ""
                message = (f"unknown segment {quote(name)}{did_you_mean} (known: {', '.join(sorted(present)) or 'none'});"
                           " name a file in segments/, or '*' for every segment")
                self.problems.append(Problem(doc.file if doc else "syncer.yml", doc.line(path) if doc else None,
                                             dotted(path), message))

    def _check_dbt_models(self, segments: dict[str, _Loaded], config: ProjectConfig) -> None:
        """A dbt model the manifest does not have would fail every run of the segment: say so with its line."""
        from syncer.project.dbt import DbtModelError, resolve_dbt_model  # json only; loaded for dbt segments alone

        for loaded in segments.values():
            segment: SegmentConfig | None = loaded.model
            if segment is None or not segment.dbt:
                continue
            try:
                resolve_dbt_model(self.root, config.dbt, segment.dbt, config.warehouse_url)
            except DbtModelError as exc:
                self.problems.append(Problem(loaded.doc.file, loaded.doc.line(("dbt",)), "dbt", exc.message))
                loaded.model = None  # it has no query: the warehouse probe must not run it

    def _check_serve_destinations(self, config: ProjectConfig, destinations: dict[str, _Loaded]) -> None:
        """``serve.twilio_destinations`` must name twilio_sms destinations: their Auth Tokens check the webhooks."""
        doc = self._project_doc
        present = self.present.get(DESTINATION.folder, set())
        for index, name in enumerate(config.serve.twilio_destinations or ()):
            path = ("serve", "twilio_destinations", index)
            model = getattr(destinations.get(name), "model", None)
            if name not in present:
                close = difflib.get_close_matches(name, sorted(present), n=1, cutoff=0.6)
                message = (f"unknown destination {quote(name)}" + (f"; did you mean '{close[0]}'?" if close else "")
                           + "; name a twilio_sms file in destinations/")
            elif model is not None and model.type != "twilio_sms":
                message = (f"destination {quote(name)} is {model.type}, not twilio_sms: only a Twilio account's Auth"
                           " Token can check Twilio's webhooks")
            else:
                continue  # a twilio_sms destination, or a broken file whose own problems say so
            self.problems.append(Problem(doc.file if doc else "syncer.yml", doc.line(path) if doc else None,
                                         dotted(path), message))

    def _check_reference(self, doc: YamlDoc, field: str, name: str, kind: FileKind) -> None:
        present = self.present.get(kind.folder, set())
        if name in present:
            return  # a file exists; if it is broken, its own problems say so
        close = difflib.get_close_matches(name, sorted(present), n=1, cutoff=0.6)
        did_you_mean = f"; did you mean '{close[0]}'?" if close else ""
        known = f" (known: {', '.join(sorted(present))})" if present else f" (there are no files in {kind.folder}/)"
        message = f"unknown {kind.noun} {quote(name)}{did_you_mean}{known}; expected the name of a file in {kind.folder}/"
        self.problems.append(Problem(doc.file, doc.line((field,)), field, message))

    def _check_identifiers(self, doc: YamlDoc, sync: SyncConfig, segment_name: str, segment: SegmentConfig) -> None:
        mapped = list(segment.identifiers)
        for index, identifier in enumerate(sync.identifiers):
            if identifier in segment.identifiers:
                continue
            message = (
                f"identifier '{identifier}' is not mapped in segment '{segment_name}': add '{identifier}: <column>'"
                f" under 'identifiers:' in segments/{segment_name}.yml (mapped there: {', '.join(mapped)})"
            )
            path = ("identifiers", index)
            self.problems.append(Problem(doc.file, doc.line(path), dotted(path), message))
