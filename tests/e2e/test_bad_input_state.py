"""Bad input, state: what the config points at is hostile (tests/state_corpus.py), and the one-daemon
lock holds whatever spelling of the database path is used.

Every case ends in one line naming the file or key and its exit code, with no traceback and no
hang. The whole corpus goes through the CLI's entry point in one subprocess (its timeout catches a
hang, and names the command that hung); one case per class also goes through real `retouch`
processes, two at a time.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from config_corpus import environment
from conftest import cli, wait_for
from state_corpus import CASES, SECRET_MARK, problems

RUNNER = Path(__file__).resolve().parents[1] / "state_corpus.py"
BY_NAME = {case.name: case for case in CASES}
RUNS = [(case.name, command) for case in CASES for command in case.commands]

# One per class of hostile state, through real processes: the entry point a store owner runs.
THROUGH_PROCESSES = [
    ("config_fifo", "check"),
    ("config_dotted_key_deep", "run"),
    ("credential_header_injection", "run"),
    ("credential_not_utf8", "check"),
    ("database_schema_from_the_future", "status"),
    ("database_is_a_fifo", "run"),
    ("database_truncated_at_a_page", "run"),
    ("lock_is_a_symlink", "run"),
]


def test_the_corpus_covers_every_class_of_hostile_state() -> None:
    assert len(CASES) >= 50
    prefixes = {case.name.split("_")[0] for case in CASES}
    assert {"config", "credential", "credentials", "env", "file", "database", "lock"} <= prefixes
    commands = {command for case in CASES for command in case.commands}
    assert commands == {"check", "run", "status"}
    assert {case.code for case in CASES} == {1, 2}


@pytest.fixture(scope="module")
def corpus_answers(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], dict]:
    """Every (case, command) answered through the CLI's entry point, in one subprocess."""
    root = tmp_path_factory.mktemp("state")
    try:
        done = subprocess.run(
            [sys.executable, str(RUNNER), str(root / "cases")],
            capture_output=True,
            text=True,
            timeout=180,
            env=environment(),
            cwd=root,
        )
    except subprocess.TimeoutExpired as exc:
        answered = (
            (exc.stdout or b"").decode().splitlines()
            if isinstance(exc.stdout, bytes)
            else (exc.stdout or "").splitlines()
        )
        hung = RUNS[len(answered)]
        raise AssertionError(f"the corpus hung at {hung}") from None
    assert done.returncode == 0, done.stderr[-2000:]
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    return {(answer["case"], answer["command"]): answer for answer in answers}


@pytest.mark.parametrize(("name", "command"), RUNS)
def test_each_hostile_state_is_one_line(corpus_answers: dict[tuple[str, str], dict], name: str, command: str) -> None:
    answer = corpus_answers[(name, command)]
    assert problems(BY_NAME[name], Path(answer["dir"]), answer["code"], answer["stdout"], answer["stderr"]) == []


def _real_process(root: Path, name: str, command: str) -> list[str]:
    case = BY_NAME[name]
    directory = root / f"{name}-{command}"
    directory.mkdir()
    config, env = case.build(directory)
    done = subprocess.run(
        [sys.executable, "-m", "retouch.sync", command, "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**environment(), **env},
        cwd=directory,
    )
    return [
        f"{name} {command}: {problem}"
        for problem in problems(case, directory, done.returncode, done.stdout, done.stderr)
    ]


def test_a_case_of_each_class_through_real_retouch_processes(tmp_path: Path) -> None:
    with ThreadPoolExecutor(2) as pool:
        found = pool.map(lambda run: _real_process(tmp_path, *run), THROUGH_PROCESSES)
    assert [problem for problems_ in found for problem in problems_] == []


# ----- the lock: one daemon per database file, whatever the URL says --------------------------------


def test_two_urls_for_one_database_the_second_daemon_refuses(
    shop, provider, write_config, daemon, tmp_path: Path
) -> None:
    shop.seed(products=1, images_per_product=1, seed=34)
    config = write_config()
    db = tmp_path / "retouch.db"
    first = daemon(config)
    wait_for(lambda: any(e["event"] == "ready" for e in first.events()), 30, what="first daemon ready")

    (tmp_path / "sub").mkdir()
    (tmp_path / "link").symlink_to(tmp_path)
    (tmp_path / "alias.db").symlink_to(db)
    spellings = {
        "a symlink to the file": f"sqlite:///{tmp_path / 'alias.db'}",
        "a symlinked folder": f"sqlite:///{tmp_path / 'link' / 'retouch.db'}",
        "a .. in the path": f"sqlite:///{tmp_path / 'sub' / '..' / 'retouch.db'}",
        "%-escapes": f"sqlite:///{tmp_path}/%72etouch.db",
        "a doubled slash": f"sqlite:///{tmp_path}//retouch.db",
    }
    text = config.read_text()
    assert f'url = "sqlite:///{db}"' in text
    for what, url in spellings.items():
        other = tmp_path / f"other-{len(what)}.toml"
        other.write_text(text.replace(f'url = "sqlite:///{db}"', f'url = "{url}"'))
        second = cli("run", config=other, timeout=60)
        assert second.returncode == 1, (what, second.stderr[-800:])
        assert f"another retouch daemon (pid {first.proc.pid}) already holds the lock" in second.stderr, what
        assert "Traceback" not in second.stderr
    assert first.proc.poll() is None
    assert first.terminate(timeout=10) == 0


def test_a_lock_held_by_another_program_is_named_as_such(tmp_path: Path) -> None:
    """`flock retouch.db.lock sleep` (a backup script, say) holds the lock: `run` says a process that is
    not retouch holds it, with its pid, instead of calling it a retouch daemon."""
    from state_corpus import config

    path = config(tmp_path)
    lock = tmp_path / "retouch.db.lock"
    lock.write_text("")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time; f = open(sys.argv[1], 'r+'); "
            "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)",
            str(lock),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        done = subprocess.run(
            [sys.executable, "-m", "retouch.sync", "run", "-c", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            env=environment(),
        )
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 1
    assert done.stderr.startswith(f"a process that is not retouch (pid {holder.pid}: "), done.stderr
    assert "already holds the lock" in done.stderr and len(done.stderr.splitlines()) == 1


def test_the_lock_is_named_after_the_canonical_database_file(tmp_path: Path) -> None:
    from retouch.sync.systemd import InstanceLock, is_held, lock_path

    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    assert lock_path(tmp_path / "alias" / "x" / ".." / "retouch.db") == tmp_path / "real" / "retouch.db.lock"
    first = InstanceLock(tmp_path / "real" / "retouch.db")
    assert first.acquire(patience=0)
    try:
        assert is_held(tmp_path / "alias" / "retouch.db") == os.getpid()
        assert not InstanceLock(tmp_path / "alias" / "retouch.db").acquire(patience=0)
    finally:
        first.release()


def test_probing_a_lock_that_is_a_symlink_neither_follows_nor_crashes(tmp_path: Path) -> None:
    from retouch.sync.systemd import is_held

    target = tmp_path / "elsewhere.lock"
    target.write_text("")
    (tmp_path / "retouch.db.lock").symlink_to(target)
    with open(target) as held:  # even when the file behind it is locked, the link is not a lock of ours
        fcntl.flock(held, fcntl.LOCK_EX)
        assert is_held(tmp_path / "retouch.db") is None


# ----- what the corpus cannot build as an unprivileged or root process alike -----------------------


def test_a_read_only_database_is_one_line(tmp_path: Path) -> None:
    """A database SQLite may only read (a read-only file or mount: opened here read-only through a URI,
    since root writes through file modes) is a StorageError naming the file and what to do."""
    from retouch.storage.store import StorageError, Store

    db = tmp_path / "retouch.db"
    Store(f"sqlite:///{db}").close()
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"retouch.db{suffix}").unlink(missing_ok=True)
    with pytest.raises(StorageError, match=r"retouch\.db is read-only .* make it writable"):
        Store(f"sqlite:///file:{db}?mode=ro&uri=true")


def test_a_read_only_mount_under_the_database(tmp_path: Path) -> None:
    from state_corpus import config

    source, mount = tmp_path / "source", tmp_path / "mount"
    source.mkdir()
    mount.mkdir()
    from retouch.storage.store import Store

    Store(f"sqlite:///{source / 'retouch.db'}").close()
    bind = subprocess.run(["mount", "--bind", str(source), str(mount)], capture_output=True)
    if bind.returncode != 0:
        pytest.skip("this machine does not allow a bind mount (test_a_read_only_database_is_one_line covers the path)")
    try:
        if subprocess.run(["mount", "-o", "remount,bind,ro", str(mount)], capture_output=True).returncode != 0:
            pytest.skip("this machine does not allow a read-only remount")
        path = config(tmp_path, db=f"sqlite:///{mount / 'retouch.db'}")
        expect = {
            "status": f"database error: {mount / 'retouch.db'} is on a read-only mount",
            "run": f"error: cannot open lock file {mount / 'retouch.db.lock'} (Read-only file system)",
        }
        for command, line in expect.items():
            done = subprocess.run(
                [sys.executable, "-m", "retouch.sync", command, "-c", str(path)],
                capture_output=True,
                text=True,
                timeout=60,
                env=environment(),
            )
            assert done.returncode == 1, done.stderr
            assert done.stderr.startswith(line), done.stderr
            assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


def test_an_unreadable_credentials_directory_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Root reads through file modes, so the permission error is made by the stat it would come from."""
    from retouch.sync import credentials
    from retouch.sync.config import ConfigError, load_settings
    from state_corpus import SHOP, config

    path = config(tmp_path, shop=SHOP)
    locked = tmp_path / "credentials"
    locked.mkdir()
    real_stat = os.stat

    def stat(target, *args, **kwargs):
        if str(target).startswith(str(locked)) and str(target) != str(locked):
            raise PermissionError(13, "Permission denied", str(target))
        return real_stat(target, *args, **kwargs)

    monkeypatch.setattr(credentials.os, "stat", stat)
    with pytest.raises(
        ConfigError,
        match=r"^\[shop\] access_token: cannot read systemd credential "
        r"shopify_access_token in \$CREDENTIALS_DIRECTORY .*Permission denied$",
    ):
        load_settings(path, environ={**environment(), "CREDENTIALS_DIRECTORY": str(locked)})


# ----- every key of every table, with every hostile value --------------------------------------------

HOSTILE_VALUES = [
    "inf",
    "-inf",
    "nan",
    "-1",
    "0",
    "0.0000001",
    "9" * 30,
    "1e308",
    '""',
    '"\\u0000"',
    '"x\\ny"',
    "[]",
    "{}",
    "true",
    '"' + "9" * 400 + 'd"',
    '"' + "x" * 5000 + '"',
    "[[[[[1]]]]]",
    '"..//..//"',
    '"/dev/null"',
    '"💥"',
    '"sqlite:////' + "a" * 5000 + '"',
    '"sqlite:////dev/zero"',
    '"sqlite:///\\u0001"',
    '"sqlite:////proc/self/mem"',
    '"sqlite:////tmp/' + "a/" * 3000 + 'r.db"',
    '"sqlite:////tmp/' + "b" * 300 + '/r.db"',
]
PROVIDERS = {
    "aigenstudio": f'name = "aigenstudio"\napi_key = "aigen_test_{SECRET_MARK}_key_77cd"\n',
    "imagen": f'name = "imagen"\napi_key = "imagen_{SECRET_MARK}_0123456789abcdef0123"\nx = 1\n',
    "productai": f'name = "productai"\napi_key = "pai_{SECRET_MARK}_0123456789abcdef"\n',
}


def _hostile_configs(directory: Path):
    """(table, key, value, TOML text): every key the config knows set to every hostile value."""
    from retouch.plugin.providers import registry
    from retouch.sync.config import _File

    tables = [(name, field.annotation) for name, field in _File.model_fields.items()]
    tables += [(name, plugin.settings_model) for name, plugin in registry.available().items()]
    for table, model in tables:
        for key in model.model_fields:
            for value in HOSTILE_VALUES:
                provider = table if table in PROVIDERS else "aigenstudio"
                body = {
                    "shop": f'url = "https://corpus-store.myshopify.com"\naccess_token = "shpat_{SECRET_MARK}_91ab"\n',
                    "provider": PROVIDERS[provider].replace("x = 1\n", ""),
                    "storage": f'url = "sqlite:///{directory / "retouch.db"}"\n',
                }
                if provider == "imagen":
                    body.setdefault("imagen", "profile_key = 5700\n")
                lines = dict(line.split(" = ", 1) for line in body.get(table, "").splitlines())
                lines[key] = value
                body[table] = "".join(f"{k} = {v}\n" for k, v in lines.items())
                yield table, key, value, "".join(f"[{name}]\n{text}" for name, text in body.items())


def test_every_key_with_every_hostile_value_is_one_line_or_accepted(tmp_path: Path) -> None:
    """In-process (1,700 files in two seconds): load_settings raises nothing but a one-line ConfigError
    naming the table, and never quotes a secret."""
    from retouch.sync.config import ConfigError, load_settings

    path, tried, crashes = tmp_path / "config.toml", 0, []
    for table, key, value, text in _hostile_configs(tmp_path):
        path.write_text(text)
        tried += 1
        try:
            load_settings(path, environ={})
        except ConfigError as exc:
            line = str(exc)
            if "\n" in line or f"[{table}]" not in line and "[" not in line or SECRET_MARK in line:
                crashes.append(f"[{table}] {key} = {value[:40]}: {line[:200]!r}")
        except Exception as exc:  # a traceback for the owner
            crashes.append(f"[{table}] {key} = {value[:40]}: {type(exc).__name__}: {str(exc)[:200]}")
    assert tried > 1500
    assert crashes == []


def test_dots_in_strings_comments_and_numbers_are_not_key_depth() -> None:
    """The dotted-key guard counts keys only: a prompt full of dots, a URL in a comment, an address
    or a version in a string, floats and multi-line strings never trip it."""
    from retouch.sync.config_file import MAX_KEY_DOTS, parse_toml

    dots = "." * 40
    text = (
        f'# see https://a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.example.com {dots}\n'
        f'prompt = "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t {dots}"\n'
        f"literal = 'x.{dots}'\n"
        f'multi = """\nline.{dots}\n"""\n'
        f"multi_literal = '''\n{dots}\n'''\n"
        f'escaped = "quote \\" inside.{dots}"\n'
        'floats = [1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5, 8.5, 9.5, 10.5, 11.5, 12.5, 13.5, 14.5, 15.5, 16.5, 17.5]\n'
        "when = 1979-05-27T07:32:00.999999Z\n"
        "[a.b.c]\nd.e.f = 1\n"
    )
    document = parse_toml(text.encode())
    assert document["prompt"].endswith(dots) and document["a"]["b"]["c"]["d"]["e"]["f"] == 1
    assert MAX_KEY_DOTS < 40
