"""``inferq models``: the model store's versions and aliases, read and written directly.

Every command that writes a version or moves an alias announces it on Redis when
``INFERQ_REDIS_URL`` is set, so running APIs serve the change at once.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import orjson

from services.cli.errors import CliError
from services.common.catalog import (
    Catalog,
    ModelMetadata,
    aliases_of,
    delete_alias,
    list_versions,
    read_metadata,
    served_by_default,
    set_alias,
)
from services.common.model_events import announce_to
from services.common.settings import Settings


def add_models_parser(commands: argparse._SubParsersAction) -> None:
    models = commands.add_parser("models", help="the model store")
    actions = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    actions.add_parser("list", help="models and their versions")
    show = actions.add_parser("show", help="metadata of a model")
    show.add_argument("name")
    show.add_argument("--version", type=int)
    versions = actions.add_parser(
        "versions", help="a model's versions: metrics, how each was trained, aliases")
    versions.add_argument("name")
    versions.add_argument("--json", action="store_true", help="as JSON, with the lineage")
    alias = actions.add_parser(
        "alias", help="point an alias at a version (`production` is served by default)")
    alias.add_argument("name")
    alias.add_argument("alias")
    alias.add_argument("version", type=int, nargs="?")
    alias.add_argument("--delete", action="store_true", help="remove the alias instead")
    actions.add_parser("train-demo", help="train iris, breast-cancer and diabetes")
    copy = actions.add_parser(
        "copy", help="copy each version of another store that this one lacks (never overwrites)")
    copy.add_argument("source", help="a directory or s3://bucket/prefix")
    imp = actions.add_parser("import", help="register a joblib-saved estimator")
    imp.add_argument("path", type=Path)
    imp.add_argument("--name", required=True)
    imp.add_argument("--features", help="comma-separated feature names, in column order")


def emit(value: object) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def _announce(settings: Settings, names: list[str]) -> None:
    """Tell running APIs. Without ``INFERQ_REDIS_URL``, the default Redis is tried (where
    ``inferq up`` starts one) and, when nothing answers there, nothing is said."""
    configured = "INFERQ_REDIS_URL" in os.environ
    for name in dict.fromkeys(names):
        if not announce_to(settings.broker_url, settings.redis_url_redacted, name,
                           quiet=not configured):
            return  # Unreachable: the others would fail alike.


def run_models(args: argparse.Namespace, settings: Settings) -> int:
    store = settings.model_store
    command = args.models_command
    if command == "list":
        emit(Catalog(store).models())
    elif command == "show":
        metadata = Catalog(store).get(args.name, args.version)
        if metadata is None:
            raise CliError(f"no model {args.name!r} (version {args.version or 'default'})")
        emit(metadata.model_dump(mode="json"))
    elif command == "versions":
        _versions(store, args.name, args.json)
    elif command == "alias":
        _alias(args, settings)
    elif command == "train-demo":
        from ml.demo import train_demo

        _written(settings, train_demo(store))
    elif command == "copy":
        from ml.store import copy_versions

        _written(settings, copy_versions(args.source, store))
    else:
        from ml.errors import ImportModelError
        from ml.importer import import_model

        features = args.features.split(",") if args.features else None
        try:
            metadata = import_model(store, args.path, args.name, features)
        except (ImportModelError, ValueError) as exc:
            raise CliError(f"import failed: {exc}") from None
        emit(metadata.model_dump(mode="json"))
        _announce(settings, [metadata.name])
    return 0


def _written(settings: Settings, written: list[ModelMetadata]) -> None:
    emit([f"{m.name} v{m.version}" for m in written])
    _announce(settings, [m.name for m in written])


def _alias(args: argparse.Namespace, settings: Settings) -> None:
    if args.delete:
        if args.version is not None:
            raise CliError("--delete takes no version: inferq models alias MODEL ALIAS --delete")
        if not list_versions(settings.model_store, args.name):
            raise CliError(f"no model {args.name!r} in the store")
        if not delete_alias(settings.model_store, args.name, args.alias):
            has = ", ".join(aliases_of(settings.model_store, args.name)) or "none"
            raise CliError(f"model {args.name!r} has no alias {args.alias!r}; its aliases: {has}")
        emit({"model": args.name, "alias": args.alias, "deleted": True})
    else:
        if args.version is None:
            raise CliError("give the version: inferq models alias MODEL ALIAS VERSION "
                           "(or --delete)")
        try:
            set_alias(settings.model_store, args.name, args.alias, args.version)
        except ValueError as exc:
            raise CliError(str(exc)) from None
        emit({"model": args.name, "alias": args.alias, "version": args.version})
    _announce(settings, [args.name])


def _versions(store: str, name: str, as_json: bool) -> None:
    versions = list_versions(store, name)
    if not versions:
        raise CliError(f"no model {name!r} in the store")
    aliases = aliases_of(store, name)
    default = served_by_default(versions, aliases)
    found = [m for m in (read_metadata(store, name, v) for v in versions) if m is not None]
    if as_json:
        emit({"model": name, "default_version": default, "aliases": aliases,
               "versions": [{**m.model_dump(mode="json"),
                             "aliases": [a for a, v in aliases.items() if v == m.version]}
                            for m in found]})
        return
    rows = [["VERSION", "CREATED", "ESTIMATOR", "METRICS", "ALIASES", "TRAINED BY"]]
    for m in found:
        rows.append([
            f"{m.version}{' *' if m.version == default else ''}",
            m.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            m.lineage.estimator if m.lineage else m.estimator,
            " ".join(f"{k}={v:.4g}" for k, v in sorted(m.metrics.items())) or "-",
            ",".join(a for a, v in aliases.items() if v == m.version) or "-",
            f"job {m.lineage.job_id}" if m.lineage else "-",
        ])
    sys.stdout.write(_table(rows) + f"* served by default (alias production, else the "
                                    f"latest): v{default}\n")


def _table(rows: list[list[Any]]) -> str:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return "".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True))
                   .rstrip() + "\n" for row in rows)
