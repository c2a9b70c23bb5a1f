"""fakesnow's server, plus the one Snowflake statement klines sends that fakesnow lacks.

`ALTER TABLE a SWAP WITH b` exchanges two tables in one atomic metadata operation on
Snowflake; klines swaps a rebuilt table in with it. fakesnow (DuckDB underneath) has no such
statement, so this launcher gives it Snowflake's result: three renames. They are not atomic
here, which no test could see on fakesnow anyway; the statement sequence klines sends is
checked by a snapshot test instead (tests/it/snowflake.rs).

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

_execute = fake_cursor.FakeSnowflakeCursor.execute


def _parts(name):
    return PART.findall(name)


def _suffixed(part, suffix):
    if part.startswith('"'):
        return f'"{part[1:-1]}{suffix}"'
    return f"{part}{suffix}"


def execute(self, command, *args, **kwargs):
    m = SWAP.match(command) if isinstance(command, str) else None
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
