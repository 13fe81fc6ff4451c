"""What every command module shares: the parser class, flags generated from dataclasses, and the text parsers.

Flags for the config sections and the OIP ascent settings come from one generator: each dataclass
field becomes a flag whose help is the field's trailing comment, read with `tokenize` (the same way
tyro reads comments), so a new field is a new flag and the house style of one commented default
per field stays. Text such as "0-7,12" is parsed here, into the lists jobs take ("4:3,9:1" is read by
Run.first_of_classes, as notebooks write it too).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import inspect
import io
import re
import tokenize
import typing
from pathlib import Path

from rich.console import Console

from ..errors import UserError

console = Console(soft_wrap=True)  # long paths stay on one line, copyable


class HelpFormatter(argparse.HelpFormatter):
    """Show each flag's default where its help does not already say it (None and False say nothing)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one line with a "did you mean", and never guesses an abbreviation.

    `--epoch 1` is an error, not `--epochs 1`: a silent guess trains what was not asked for.
    """

    example = ""  # one command line shown at the end of --help, unwrapped so it can be copied

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def format_help(self) -> str:
        return super().format_help() + (f"\nexample: {self.example}\n" if self.example else "")

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}{self._suggestion(message)} (see {self.prog} --help)\n")

    def _suggestion(self, message: str) -> str:
        if m := re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message):
            choices = re.findall(r"'([^']*)'", m.group(2))
            close = difflib.get_close_matches(m.group(1), choices, n=1, cutoff=0.6)
            return f"; did you mean '{close[0]}'?" if close else ""
        if m := re.search(r"unrecognized arguments: (\S+)", message):
            close = difflib.get_close_matches(m.group(1).split("=")[0], list(self._option_string_actions), n=1,
                                              cutoff=0.6)
            return f"; did you mean {close[0]}?" if close else ""
        return ""


@functools.cache
def field_docs(cls) -> dict[str, str]:
    """Return each dataclass field's trailing comment: the text after `name: type = default  #`."""
    docs, field_name = {}, None
    for token in tokenize.generate_tokens(io.StringIO(inspect.getsource(cls)).readline):
        if token.type == tokenize.NAME and token.line[: token.start[1]].strip() == "":
            field_name = token.string  # the first name on a line is the field it declares
        elif token.type == tokenize.COMMENT and field_name and token.line[: token.start[1]].strip():
            docs[field_name] = token.string.lstrip("#").strip()
        elif token.type == tokenize.NEWLINE:
            field_name = None
    return docs


def add_dataclass_flags(group, cls, dest_prefix: str = "", choices: dict[str, tuple] | None = None,
                        skip: tuple[str, ...] = ()) -> None:
    """Add one flag per field of a dataclass: --field-name, typed, with the field's comment and default as help.

    Flags default to None so the caller can tell which were given; tuple fields are derived, not set.
    """
    types = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = types[f.name]
        if f.name in skip or typing.get_origin(kind) is tuple:
            continue
        text = field_docs(cls).get(f.name, "").replace("%", "%%")  # argparse formats help with %
        kw = dict(dest=dest_prefix + f.name, default=None, help=f"{text} (default: {f.default})")
        flag = "--" + f.name.replace("_", "-")
        if kind is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        else:
            options = (choices or {}).get(f.name)
            group.add_argument(flag, type=kind, choices=options, metavar=None if options else f.name.upper(), **kw)


def given(args, cls, dest_prefix: str = "") -> dict:
    """Return the fields of `cls` whose flags were given, by field name."""
    return {f.name: v for f in dataclasses.fields(cls) if (v := getattr(args, dest_prefix + f.name, None)) is not None}


def parse_indices(text: str, what: str) -> list[int]:
    """Return indices from '0-7,12' in the order given, without repeats; malformed text is a UserError."""
    if not re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", text.strip()):
        raise UserError(f"{what} '{text}' must be indices and ranges, e.g. 0-7,12")
    picked: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        picked += range(int(lo), int(hi or lo) + 1)
    return list(dict.fromkeys(picked))


def parse_names(text: str | None) -> list[str] | None:
    """Return the comma-separated names of a flag, or None when it was not given."""
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def print_written(files, listed: int = 4) -> None:
    """Print each file a command wrote; a folder that got more than `listed` (top's 16 pages) gets one line."""
    by_folder: dict[Path, list[Path]] = {}
    for path in map(Path, files):
        by_folder.setdefault(path.parent, []).append(path)
    for folder, paths in by_folder.items():
        if len(paths) > listed:
            console.print(f"wrote {len(paths)} files in {folder}: {paths[0].name} ... {paths[-1].name}")
            continue
        for path in paths:
            console.print(f"wrote {path}")
