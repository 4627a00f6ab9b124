"""The hostile-state corpus: what the config *points at* is broken, not its TOML text.

A case is a scratch directory built by a function (a FIFO given as `-c`, a credential file that is
not UTF-8, a database file that is a directory or from a future retouch, a lock file that is a
symlink…), the commands to run on it, and the one line they must answer: the exit code, the
prefix (`config error: ` exit 2, `database error: ` or `error: ` exit 1) and a text naming the
file or key. tests/bad_configs/ holds the cases that are TOML text; this holds the rest.

Run as a script (`python state_corpus.py DIR`) it builds every case under DIR and answers each
command through the CLI's entry point in this one process (config_corpus.answer_in_process), with
the case's environment, printing one JSON line per answer as soon as it has it: a process per
command would cost a second each, and a command that hangs is the first one missing.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from config_corpus import SECRET_MARK, environment

SHOP = '[shop]\nurl = "https://corpus-store.myshopify.com"\n'
SHOP_TOKEN = f'access_token = "shpat_{SECRET_MARK}_shop_91ab"\n'
PROVIDER = f'[provider]\napi_key = "aigen_test_{SECRET_MARK}_key_77cd"\n'
SCHEMA_VERSION = 3  # storage/models.py: the cases below write versions around it


@dataclass(frozen=True)
class StateCase:
    name: str
    build: Callable[[Path], tuple[Path, dict[str, str]]]  # scratch dir -> (config path, extra environment)
    commands: tuple[str, ...]
    code: int
    expect: str
    prefix: str = "config error: "
    after: Callable[[Path], str | None] | None = None  # a check on the directory afterwards: what is wrong


def config(
    directory: Path, *, shop: str = SHOP + SHOP_TOKEN, provider: str = PROVIDER, extra: str = "", db: str | None = None
) -> Path:
    path = directory / "config.toml"
    url = db if db is not None else f"sqlite:///{directory / 'retouch.db'}"
    path.write_text(shop + provider + extra + f'[storage]\nurl = "{url}"\n')
    return path


def plain(directory: Path, **options) -> tuple[Path, dict[str, str]]:
    return config(directory, **options), {}


# ----- -c pointing at something that is not a config file ------------------------------------------


def config_is(make: Callable[[Path], Path]) -> Callable[[Path], tuple[Path, dict[str, str]]]:
    return lambda directory: (make(directory), {})


def _fifo(directory: Path) -> Path:
    os.mkfifo(directory / "config.toml")
    return directory / "config.toml"


def _symlink_to_fifo(directory: Path) -> Path:
    os.mkfifo(directory / "pipe")
    (directory / "config.toml").symlink_to(directory / "pipe")
    return directory / "config.toml"


def _socket(directory: Path) -> Path:
    path = directory / "config.toml"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))  # the file stays after close
    return path


def _directory(directory: Path) -> Path:
    (directory / "config.toml").mkdir()
    return directory / "config.toml"


def _loop(directory: Path) -> Path:
    (directory / "config.toml").symlink_to(directory / "config.toml")
    return directory / "config.toml"


def _text(body: str | bytes, prefix: bool = True) -> Callable[[Path], Path]:
    def make(directory: Path) -> Path:
        path = config(directory) if prefix else directory / "config.toml"
        data = body.encode() if isinstance(body, str) else body
        path.write_bytes((path.read_bytes() if prefix else b"") + data)
        return path

    return make


# ----- systemd credentials -----------------------------------------------------------------------


def credential(
    write: Callable[[Path], None], name: str = "shopify_access_token", directory_name: str = "credentials"
) -> Callable[[Path], tuple[Path, dict[str, str]]]:
    """A config without the shop's token, and $CREDENTIALS_DIRECTORY holding `name` as `write` made it."""

    def build(directory: Path) -> tuple[Path, dict[str, str]]:
        creds = directory / directory_name
        write(creds / name)
        return config(directory, shop=SHOP), {"CREDENTIALS_DIRECTORY": str(creds)}

    return build


def _holds(data: bytes) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    return write


def _cred_directory(path: Path) -> None:
    path.mkdir(parents=True)


def _cred_fifo(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)


def _cred_device(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to("/dev/zero")


def _cred_loop(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(path)


def _credentials_dir_is(kind: str) -> Callable[[Path], tuple[Path, dict[str, str]]]:
    def build(directory: Path) -> tuple[Path, dict[str, str]]:
        target = directory / "credentials"
        if kind == "file":
            target.write_text("shpat_not_a_directory\n")
        return config(directory, shop=SHOP), {"CREDENTIALS_DIRECTORY": str(target)}

    return build


def _provider_credential(data: bytes) -> Callable[[Path], tuple[Path, dict[str, str]]]:
    def build(directory: Path) -> tuple[Path, dict[str, str]]:
        _holds(data)(directory / "credentials" / "provider_api_key")
        return config(directory, provider="[provider]\n"), {"CREDENTIALS_DIRECTORY": str(directory / "credentials")}

    return build


def _env_token(value: str) -> Callable[[Path], tuple[Path, dict[str, str]]]:
    def build(directory: Path) -> tuple[Path, dict[str, str]]:
        return config(directory, shop=SHOP + 'access_token_env = "RETOUCH_CORPUS_TOKEN"\n'), {
            "RETOUCH_CORPUS_TOKEN": value
        }

    return build


# ----- the database ------------------------------------------------------------------------------


def database(make: Callable[[Path], None], url: str | None = None) -> Callable[[Path], tuple[Path, dict[str, str]]]:
    def build(directory: Path) -> tuple[Path, dict[str, str]]:
        make(directory / "retouch.db")
        return config(directory, db=url.replace("{dir}", str(directory)) if url else None), {}

    return build


def _sqlite(path: Path, *statements: str) -> None:
    with sqlite3.connect(path) as conn:
        for statement in statements:
            conn.execute(statement)
    conn.close()


def _retouch_db(version: str) -> Callable[[Path], None]:
    """A database as retouch makes it (its tables), with `version` written as its schema version."""

    def make(path: Path) -> None:
        from retouch.storage.store import Store

        Store(f"sqlite:///{path}").close()
        _sqlite(path, f"UPDATE meta SET value = '{version}' WHERE key = 'schema_version'")

    return make


def _big_foreign_db(path: Path) -> None:
    _sqlite(
        path,
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)",
        *[f"INSERT INTO customers (name) VALUES ('{'x' * 900}')" for _ in range(40)],
    )


def _truncated_at_a_page(path: Path) -> None:
    _big_foreign_db(path)
    data = path.read_bytes()
    path.write_bytes(data[: 4096 * 2])  # the header says more pages than there are


def _truncated_mid_page(path: Path) -> None:
    _big_foreign_db(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])


def _bytes(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


def _db_directory(path: Path) -> None:
    path.mkdir()


def _db_fifo(path: Path) -> None:
    os.mkfifo(path)


def _nothing(path: Path) -> None:
    pass


# ----- the lock file -----------------------------------------------------------------------------


def _state_directory(name: str) -> Callable[[Path], tuple[Path, dict[str, str]]]:
    """No [storage] url: the database goes under $STATE_DIRECTORY, here a name the system refuses."""

    def build(directory: Path) -> tuple[Path, dict[str, str]]:
        path = directory / "config.toml"
        path.write_text(SHOP + SHOP_TOKEN + PROVIDER)
        return path, {"STATE_DIRECTORY": str(directory / name)}

    return build


def lock_is(make: Callable[[Path], None]) -> Callable[[Path], tuple[Path, dict[str, str]]]:
    def build(directory: Path) -> tuple[Path, dict[str, str]]:
        make(directory / "retouch.db.lock")
        return config(directory), {}

    return build


VICTIM = "the owner's precious file\n"


def _lock_symlink(lock: Path) -> None:
    (lock.parent / "victim.txt").write_text(VICTIM)
    lock.symlink_to(lock.parent / "victim.txt")


def _lock_dangling(lock: Path) -> None:
    lock.symlink_to(lock.parent / "created-through-the-link")


def _victim_untouched(directory: Path) -> str | None:
    if (directory / "victim.txt").read_text() != VICTIM:
        return "the file behind the lock's symlink was overwritten"
    return None


def _nothing_created(directory: Path) -> str | None:
    return (
        "a file was created through the lock's symlink" if (directory / "created-through-the-link").exists() else None
    )


def _lock_hard_link(lock: Path) -> None:
    (lock.parent / "victim.txt").write_text(VICTIM)
    os.link(lock.parent / "victim.txt", lock)


def _lock_foreign(lock: Path) -> None:
    lock.write_text(VICTIM)


def _sidecar(suffix: str, kind: str) -> Callable[[Path], None]:
    """A retouch database with `<db><suffix>` made a symlink (to a file SQLite must not write),
    a directory or a FIFO."""

    def make(path: Path) -> None:
        _retouch_db(str(SCHEMA_VERSION))(path)
        side = path.with_name(path.name + suffix)
        side.unlink(missing_ok=True)
        if kind == "symlink":
            (path.parent / "victim.txt").write_text(VICTIM)
            side.symlink_to(path.parent / "victim.txt")
        elif kind == "directory":
            side.mkdir()
        else:
            os.mkfifo(side)

    return make


def _lock_directory(lock: Path) -> None:
    lock.mkdir()


def _lock_fifo(lock: Path) -> None:
    os.mkfifo(lock)


# ----- the corpus --------------------------------------------------------------------------------

CHECK_RUN = ("check", "run")
ALL = ("check", "run", "status")
DEEP = 100_000

CASES = [
    # -c names something that is not a config file: refused before it is opened (no hang).
    StateCase("config_fifo", config_is(_fifo), CHECK_RUN, 2, "config.toml: is a named pipe (FIFO), not a regular file"),
    StateCase("config_symlink_to_fifo", config_is(_symlink_to_fifo), CHECK_RUN, 2, "is a named pipe (FIFO)"),
    StateCase("config_socket", config_is(_socket), CHECK_RUN, 2, "config.toml: is a socket, not a regular file"),
    StateCase(
        "config_directory", config_is(_directory), CHECK_RUN, 2, "config.toml: is a directory, not a regular file"
    ),
    StateCase(
        "config_dev_zero",
        config_is(lambda d: Path("/dev/zero")),
        CHECK_RUN,
        2,
        "/dev/zero: is a character device, not a regular file",
    ),
    StateCase(
        "config_dev_null", config_is(lambda d: Path("/dev/null")), CHECK_RUN, 2, "/dev/null: is a character device"
    ),
    StateCase("config_symlink_loop", config_is(_loop), CHECK_RUN, 2, "config.toml: cannot read (Too many levels"),
    StateCase(
        "config_proc_self_mem",
        config_is(lambda d: Path("/proc/self/mem")),
        CHECK_RUN,
        2,
        "/proc/self/mem: cannot read (Input/output error)",
    ),
    StateCase("config_empty_path", config_is(lambda d: Path("")), CHECK_RUN, 2, ".: is a directory"),
    StateCase("config_missing", config_is(lambda d: d / "nowhere.toml"), CHECK_RUN, 2, "nowhere.toml: file not found"),
    StateCase("config_empty", config_is(_text("", prefix=False)), CHECK_RUN, 2, "[shop]: missing (required)"),
    StateCase("config_oversize", config_is(_text("#" * 300_000 + "\n")), CHECK_RUN, 2, "config.toml: is 300,"),
    StateCase("config_nul_byte", config_is(_text(b"# a\x00b\n")), CHECK_RUN, 2, "holds a NUL byte"),
    StateCase(
        "config_utf16",
        config_is(_text("[shop]\n".encode("utf-16"), prefix=False)),
        CHECK_RUN,
        2,
        "cannot read (UnicodeDecodeError): not UTF-8 at line 1",
    ),
    StateCase(
        "config_dotted_key_deep",
        config_is(_text("a." * DEEP + "b = 1\n", prefix=False)),
        CHECK_RUN,
        2,
        f"a key or table name with {DEEP} dots",
    ),
    StateCase(
        "config_quoted_dotted_key_deep",
        config_is(_text('"a".' * 5000 + "b = 1\n", prefix=False)),
        CHECK_RUN,
        2,
        "a key or table name with 5000 dots",
    ),
    StateCase(
        "config_table_header_deep",
        config_is(_text("[" + "t." * 40 + "t]\nx = 1\n", prefix=False)),
        CHECK_RUN,
        2,
        "a key or table name with 40 dots",
    ),
    StateCase(
        "config_arrays_deep",
        config_is(_text("a = " + "[" * DEEP + "]" * DEEP + "\n", prefix=False)),
        CHECK_RUN,
        2,
        "nested too deeply",
    ),
    StateCase(
        "config_inline_tables_deep",
        config_is(_text("a = " + "{b=" * 300 + "1" + "}" * 300 + "\n")),
        CHECK_RUN,
        2,
        "nested 302 levels deep (at most 8)",
    ),
    StateCase(
        "config_arrays_nested_twelve",
        config_is(_text("a = " + "[" * 12 + "]" * 12 + "\n")),
        CHECK_RUN,
        2,
        "nested 14 levels deep (at most 8)",
    ),
    StateCase(
        "config_integer_5000_digits",
        config_is(_text("[schedule]\ntick = " + "9" * 5000 + "\n", prefix=False)),
        CHECK_RUN,
        2,
        "Exceeds the limit (4300 digits)",
    ),
    # systemd credentials that exist but cannot be a token.
    StateCase(
        "credentials_directory_missing",
        lambda d: (config(d, shop=SHOP), {"CREDENTIALS_DIRECTORY": str(d / "no")}),
        CHECK_RUN,
        2,
        "[shop] access_token: cannot look in $CREDENTIALS_DIRECTORY",
    ),
    StateCase(
        "credentials_directory_is_a_file",
        _credentials_dir_is("file"),
        CHECK_RUN,
        2,
        "[shop] access_token: $CREDENTIALS_DIRECTORY",
    ),
    StateCase(
        "credential_empty",
        credential(_holds(b"")),
        CHECK_RUN,
        2,
        "[shop] access_token: systemd credential shopify_access_token is empty",
    ),
    StateCase(
        "credential_only_whitespace",
        credential(_holds(b" \n\t\n")),
        CHECK_RUN,
        2,
        "systemd credential shopify_access_token is empty",
    ),
    StateCase(
        "credential_not_utf8",
        credential(_holds(b"shpat_\xff\xfe\x00token")),
        CHECK_RUN,
        2,
        "systemd credential shopify_access_token is not UTF-8 text",
    ),
    StateCase(
        "credential_is_a_directory",
        credential(_cred_directory),
        CHECK_RUN,
        2,
        "systemd credential shopify_access_token is a directory, not a regular file",
    ),
    StateCase(
        "credential_is_a_fifo",
        credential(_cred_fifo),
        CHECK_RUN,
        2,
        "systemd credential shopify_access_token is a named pipe (FIFO)",
    ),
    StateCase(
        "credential_is_dev_zero",
        credential(_cred_device),
        CHECK_RUN,
        2,
        "systemd credential shopify_access_token is a character device",
    ),
    StateCase(
        "credential_symlink_loop",
        credential(_cred_loop),
        CHECK_RUN,
        2,
        "cannot read systemd credential shopify_access_token",
    ),
    StateCase(
        "credential_oversize",
        credential(_holds(b"shpat_" + b"a" * 100_000)),
        CHECK_RUN,
        2,
        "systemd credential shopify_access_token is 100,006 bytes; at most 65,536",
    ),
    StateCase(
        "credential_header_injection",
        credential(_holds(f"shpat_{SECRET_MARK}\r\nX-Evil: 1\n".encode())),
        CHECK_RUN,
        2,
        "[shop] access_token: the value from systemd credential shopify_access_token holds a line break",
    ),
    StateCase(
        "credential_non_ascii",
        credential(_holds(f"shpat_{SECRET_MARK}_é".encode())),
        CHECK_RUN,
        2,
        "holds a non-ASCII character",
    ),
    StateCase(
        "credential_space_inside",
        credential(_holds(f"shpat_{SECRET_MARK} two".encode())),
        CHECK_RUN,
        2,
        "holds a space",
    ),
    StateCase(
        "credential_nul_inside",
        credential(_holds(f"shpat_{SECRET_MARK}\x00x".encode())),
        CHECK_RUN,
        2,
        "holds a line break or another control character",
    ),
    StateCase(
        "credential_provider_key_non_ascii",
        _provider_credential(f"aigen_test_{SECRET_MARK}_ключ".encode()),
        CHECK_RUN,
        2,
        "[provider] api_key: the value from systemd credential provider_api_key holds a non-ASCII",
    ),
    StateCase(
        "credential_token_too_long",
        credential(_holds(b"shpat_" + b"a" * 5000)),
        CHECK_RUN,
        2,
        "[shop] access_token: the value from systemd credential shopify_access_token is 5,006 characters long",
    ),
    StateCase(
        "env_token_100k",
        _env_token("shpat_" + "b" * 100_000),
        CHECK_RUN,
        2,  # exec takes at most 128 KiB a variable
        "[shop] access_token_env: the value from environment variable RETOUCH_CORPUS_TOKEN is 100,006 characters",
    ),
    StateCase(
        "env_token_line_break",
        _env_token(f"shpat_{SECRET_MARK}\nX-Evil: 1"),
        CHECK_RUN,
        2,
        "[shop] access_token_env: the value from environment variable RETOUCH_CORPUS_TOKEN holds a line break",
    ),
    StateCase(
        "file_token_non_ascii",
        lambda d: plain(d, shop=SHOP + f'access_token = "shpat_{SECRET_MARK}_ü"\n'),
        CHECK_RUN,
        2,
        "[shop] access_token: the value from the config file holds a non-ASCII character",
    ),
    StateCase(
        "file_key_tab_inside",
        lambda d: plain(d, provider=f'[provider]\napi_key = "aigen_test_{SECRET_MARK}\\tx"\n'),
        CHECK_RUN,
        2,
        "[provider] api_key: the value from the config file holds a line break or another control",
    ),
    StateCase(
        "file_webhook_secret_escape",
        lambda d: plain(d, extra=f'[server]\nshopify_webhook_secret = "hook_{SECRET_MARK}\\u001b[31m"\n'),
        CHECK_RUN,
        2,
        "[server] shopify_webhook_secret: the value from the config file holds a line break or another control",
    ),
    # The database file: what a stat can tell is a config error; what only SQLite can tell, a database error.
    StateCase(
        "database_is_a_directory", database(_db_directory), ALL, 2, "[storage] url: {dir}/retouch.db is a directory"
    ),
    StateCase("database_is_a_fifo", database(_db_fifo), ALL, 2, "retouch.db is not a regular file (a FIFO"),
    StateCase(
        "database_is_dev_null",
        database(_nothing, "sqlite:////dev/null"),
        ALL,
        2,
        "[storage] url: /dev/null is not a regular file",
    ),
    StateCase(
        "database_is_text",
        database(_bytes(b"not a database\n")),
        ALL,
        2,
        "retouch.db is not an SQLite database, or a truncated one (15 bytes",
    ),
    StateCase("database_truncated_mid_page", database(_truncated_mid_page), ALL, 2, "a truncated one"),
    StateCase(
        "database_truncated_at_a_page",
        database(_truncated_at_a_page),
        ALL,
        1,
        "{dir}/retouch.db is damaged (database disk image is malformed)",
        prefix="database error: ",
    ),
    StateCase(
        "database_random_pages",
        database(_bytes(bytes(range(256)) * 32)),
        ALL,
        1,
        "{dir}/retouch.db is not an SQLite database (or is encrypted)",
        prefix="database error: ",
    ),
    StateCase(
        "database_schema_from_the_future",
        database(_retouch_db(str(SCHEMA_VERSION + 7))),
        ALL,
        1,
        f"database schema version {SCHEMA_VERSION + 7} is newer than this retouch",
        prefix="database error: ",
    ),
    StateCase(
        "database_schema_words",
        database(_retouch_db("three")),
        ALL,
        1,
        "schema version 'three' was not written by retouch",
        prefix="database error: ",
    ),
    StateCase(
        "database_schema_negative",
        database(_retouch_db("-1")),
        ALL,
        1,
        "schema version '-1' was not written by retouch",
        prefix="database error: ",
    ),
    StateCase(
        "database_schema_huge",
        database(_retouch_db("9" * 40)),
        ALL,
        1,
        "was not written by retouch",
        prefix="database error: ",
    ),
    StateCase(
        "database_of_another_program",
        database(_big_foreign_db),
        ALL,
        1,
        "retouch.db: holds another program's tables (customers…)",
        prefix="database error: ",
    ),
    StateCase(
        "database_in_memory",
        database(_nothing, "sqlite:///:memory:"),
        ALL,
        2,
        "[storage] url: an in-memory database forgets every image",
    ),
    StateCase("database_no_name", database(_nothing, "sqlite:///"), ALL, 2, "[storage] url: names no database file"),
    StateCase(
        "database_url_query",
        database(_nothing, "sqlite:///{dir}/retouch.db?mode=rwc"),
        ALL,
        2,
        "[storage] url: '?mode=rwc': retouch takes no URL parameters",
    ),
    StateCase(
        "database_uri_memory",
        database(_nothing, "sqlite:///file::memory:?uri=true&cache=shared"),
        ALL,
        2,
        "retouch takes no URL parameters",
    ),
    StateCase(
        "database_url_nul_byte",
        database(_nothing, "sqlite:///{dir}/re\\u0000touch.db"),
        ALL,
        2,
        "[storage] url: the file name holds a control character",
    ),
    StateCase(
        "database_wal_is_a_symlink",
        database(_sidecar("-wal", "symlink")),
        ALL,
        2,
        "retouch.db cannot be opened safely: retouch.db-wal beside it is a symbolic link",
        after=_victim_untouched,
    ),
    StateCase(
        "database_shm_is_a_directory",
        database(_sidecar("-shm", "directory")),
        ALL,
        2,
        "retouch.db cannot be opened safely: retouch.db-shm beside it is not a regular file",
    ),
    StateCase(
        "database_journal_is_a_fifo",
        database(_sidecar("-journal", "fifo")),
        ALL,
        2,
        "retouch.db-journal beside it is not a regular file",
    ),
    StateCase(
        "database_default_under_a_state_directory_too_long",
        _state_directory("x" * 300),
        ALL,
        2,
        "cannot be used (File name too long)",
    ),
    # The lock file beside the database: never followed, never overwritten.
    StateCase(
        "lock_is_a_symlink",
        lock_is(_lock_symlink),
        ("run",),
        1,
        "retouch.db.lock is a symbolic link; retouch does not follow it",
        prefix="error: lock file ",
        after=_victim_untouched,
    ),
    StateCase(
        "lock_is_a_dangling_symlink",
        lock_is(_lock_dangling),
        ("run",),
        1,
        "is a symbolic link",
        prefix="error: lock file ",
        after=_nothing_created,
    ),
    StateCase(
        "lock_is_a_directory",
        lock_is(_lock_directory),
        ("run",),
        1,
        "retouch.db.lock is a directory: remove it",
        prefix="error: lock file ",
    ),
    StateCase(
        "lock_is_a_hard_link",
        lock_is(_lock_hard_link),
        ("run",),
        1,
        "retouch.db.lock has 1 other hard link(s); retouch does not overwrite it",
        prefix="error: lock file ",
        after=_victim_untouched,
    ),
    StateCase(
        "lock_holds_something_else",
        lock_is(_lock_foreign),
        ("run",),
        1,
        "retouch.db.lock holds something else than a pid; retouch does not overwrite it",
        prefix="error: lock file ",
        after=lambda d: None if (d / "retouch.db.lock").read_text() == VICTIM else "the lock file was overwritten",
    ),
    StateCase(
        "lock_is_a_fifo",
        lock_is(_lock_fifo),
        ("run",),
        1,
        "retouch.db.lock is not a regular file",
        prefix="error: lock file ",
    ),
]


def expected(case: StateCase, directory: Path) -> str:
    return case.expect.replace("{dir}", str(directory))


def problems(case: StateCase, directory: Path, code: int, stdout: str, stderr: str) -> list[str]:
    """What is wrong with one command's answer to `case`; empty when it is right."""
    found = []
    if code != case.code:
        found.append(f"exit {code}, not {case.code}")
    if "Traceback" in stdout + stderr:
        found.append("a traceback")
    if SECRET_MARK in stdout + stderr:
        found.append("a secret was printed")
    lines = stderr.splitlines()
    if len(lines) != 1:
        found.append(f"{len(lines)} lines on stderr, not 1: {stderr[-600:]!r}")
    line = lines[0] if lines else ""
    if not line.startswith(case.prefix):
        found.append(f"does not start with {case.prefix!r}: {line[:300]!r}")
    if expected(case, directory) not in line:
        found.append(f"expected {expected(case, directory)!r} in {line[:400]!r}")
    if case.after is not None and (wrong := case.after(directory)):
        found.append(wrong)
    return found


def build_all(root: Path) -> list[dict]:
    """Every case built in its own directory under `root`: what to run for each command."""
    runs = []
    for case in CASES:
        directory = root / case.name
        directory.mkdir(parents=True)
        path, env = case.build(directory)
        for command in case.commands:
            runs.append(
                {
                    "case": case.name,
                    "command": command,
                    "dir": str(directory),
                    "argv": [command, "-c", str(path)],
                    "env": env,
                }
            )
    return runs


def answer_all(runs: list[dict]) -> None:
    from config_corpus import answer_in_process

    base = environment()
    for run in runs:
        os.environ.clear()
        os.environ.update({**base, **run["env"]})
        os.chdir(run["dir"])
        code, stdout, stderr = answer_in_process(run["argv"])
        print(json.dumps({**run, "code": code, "stdout": stdout, "stderr": stderr}), flush=True)


if __name__ == "__main__":
    answer_all(build_all(Path(sys.argv[1])))
