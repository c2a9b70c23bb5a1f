"""fakesnow's server, plus the Snowflake features klines relies on that fakesnow lacks.

- `ALTER TABLE a SWAP WITH b` exchanges two tables in one atomic metadata operation on
  Snowflake; klines swaps a rebuilt table in with it. fakesnow (DuckDB underneath) has no such
  statement, so this launcher gives it Snowflake's result: three renames. They are not atomic
  here, which no test could see on fakesnow anyway; the statement sequence klines sends is
  checked by a snapshot test instead (tests/it/snowflake.rs).
- The COPY of the pipe that `klines setup snowflake` prints names its file format
  (`FILE_FORMAT = (FORMAT_NAME = X)`) and records each row's file (`METADATA$FILENAME`).
  fakesnow knows neither: named Parquet formats are remembered when created and spelled out
  in a COPY, and `METADATA$FILENAME` becomes the file's path (relative to the stage, as
  Snowflake gives it) in a COPY of one file, which is how Snowpipe runs a pipe.

Usage: the fakesnow command line (`python scripts/fakesnow-server.py -s --host H -p P`).
"""

import re
import sys

from fakesnow import cursor as fake_cursor
from fakesnow.cli import main

NAME = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
SWAP = re.compile(
    rf"^\s*ALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?P<a>{NAME}(?:\.{NAME})*)\s+SWAP\s+WITH\s+(?P<b>{NAME}(?:\.{NAME})*)\s*;?\s*$",
    re.IGNORECASE,
)
PART = re.compile(NAME)

FILE_FORMAT = re.compile(
    rf"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?FILE\s+FORMAT\s+(?:IF\s+NOT\s+EXISTS\s+)?(?P<name>{NAME}(?:\.{NAME})*)\s+(?P<options>.*?)\s*;?\s*$",
    re.IGNORECASE | re.DOTALL,
)
FORMAT_NAME = re.compile(rf"FILE_FORMAT\s*=\s*\(\s*FORMAT_NAME\s*=\s*(?P<name>{NAME}(?:\.{NAME})*)\s*\)", re.IGNORECASE)
ONE_FILE = re.compile(r"FILES\s*=\s*\(\s*'(?P<path>(?:[^']|'')*)'\s*\)", re.IGNORECASE)
FORMATS = {}

_execute = fake_cursor.FakeSnowflakeCursor.execute


def _key(name):
    return ".".join(p.strip('"').upper() for p in _parts(name))


def _copy(command):
    """A COPY with its named format spelled out and METADATA$FILENAME as its one file."""

    def spell(m):
        options = FORMATS.get(_key(m["name"]))
        if options is None:
            raise NotImplementedError(f"file format {m['name']} was not created here")
        return f"FILE_FORMAT = ({options})"

    command = FORMAT_NAME.sub(spell, command)
    if "METADATA$FILENAME" in command.upper():
        one = ONE_FILE.search(command)
        if not one:
            raise NotImplementedError("METADATA$FILENAME in a COPY of more than one file")
        command = re.sub(r"METADATA\$FILENAME", f"'{one['path']}'", command, flags=re.IGNORECASE)
    return command


def _parts(name):
    return PART.findall(name)


def _suffixed(part, suffix):
    if part.startswith('"'):
        return f'"{part[1:-1]}{suffix}"'
    return f"{part}{suffix}"


def execute(self, command, *args, **kwargs):
    if not isinstance(command, str):
        return _execute(self, command, *args, **kwargs)
    fmt = FILE_FORMAT.match(command)
    if fmt:
        FORMATS[_key(fmt["name"])] = fmt["options"]
    if re.match(r"^\s*COPY\s+INTO", command, re.IGNORECASE):
        command = _copy(command)
    m = SWAP.match(command)
    if not m:
        return _execute(self, command, *args, **kwargs)
    a, b = _parts(m["a"]), _parts(m["b"])
    side = _suffixed(a[-1], "__FAKESNOW_SWAP")
    _execute(self, f"ALTER TABLE {m['a']} RENAME TO {side}")
    _execute(self, f"ALTER TABLE {m['b']} RENAME TO {a[-1]}")
    _execute(self, f"ALTER TABLE {'.'.join(a[:-1] + [side])} RENAME TO {b[-1]}")
    return _execute(self, "SELECT 'Statement executed successfully.' AS \"status\"")


fake_cursor.FakeSnowflakeCursor.execute = execute

if __name__ == "__main__":
    sys.exit(main())
