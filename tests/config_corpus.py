"""The broken-config corpus (tests/bad_configs/): each file and the one line the CLI must answer.

Each file's first line is `# expect: TEXT`; the CLI must exit 2 with exactly one line on stderr,
`config error: …`, containing TEXT. `{tmp}` in a file stands for a scratch directory (which holds a
regular file `retouch.toml`, for paths that run into a file). Every secret written in the corpus
contains CORPUSSECRET, so one substring check proves none is echoed back.

Used by tests/e2e/test_bad_input_config.py and bench/bad_input.py. Run as a script
(`python config_corpus.py DIR FILE…`) it answers each file through the CLI's own entry point in
this one process and prints one JSON line per file: starting a process per file costs ~1 s each.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "bad_configs"
SECRET_MARK = "CORPUSSECRET"
# Named by *_env in some files: set, so "both set" cases prove the file is refused even when the
# variable would resolve; and one that must be unset.
ENV = {"SHOPIFY_TOKEN": f"shpat_{SECRET_MARK}_from_env", "AIGEN_KEY": f"aigen_test_{SECRET_MARK}_from_env"}
UNSET = "RETOUCH_CORPUS_UNSET_VAR"


@dataclass(frozen=True)
class Case:
    name: str
    source: Path
    expect: str

    @property
    def file_level(self) -> bool:
        """Errors about the file as a whole (syntax, encoding) name the line, not a key."""
        return self.name.startswith(("toml_", "not_utf8"))


def cases() -> list[Case]:
    found = []
    for path in sorted(CORPUS.glob("*.toml")):
        first = path.read_bytes().split(b"\n", 1)[0].decode()
        if not first.startswith("# expect: "):
            raise ValueError(f"{path.name}: the first line must be '# expect: …'")
        found.append(Case(path.stem, path, first.removeprefix("# expect: ")))
    return found


def scratch(directory: Path) -> Path:
    """The directory `{tmp}` stands for, with its regular file `retouch.toml`."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "retouch.toml").write_text("# a regular file, not a directory\n")
    return directory


def materialise(case: Case, directory: Path) -> Path:
    """A real config file for `case` in `directory` (bytes kept as they are: one file is not UTF-8)."""
    path = scratch(directory) / f"{case.name}.toml"
    path.write_bytes(case.source.read_bytes().replace(b"{tmp}", str(directory).encode()))
    return path


def environment() -> dict[str, str]:
    env = {**os.environ, "NO_COLOR": "1", **ENV}
    env.pop(UNSET, None)
    env.pop("CREDENTIALS_DIRECTORY", None)  # a systemd credential would stand in for a missing secret
    env.pop("RETOUCH_CONFIG", None)
    return env


def problems(case: Case, code: int, stdout: str, stderr: str) -> list[str]:
    """What is wrong with the CLI's answer to `case`; empty when it is right."""
    found = []
    if code != 2:
        found.append(f"exit {code}, not 2")
    if "Traceback" in stdout + stderr:
        found.append("a traceback")
    if SECRET_MARK in stdout + stderr:
        found.append("a secret was printed")
    lines = stderr.splitlines()
    if len(lines) != 1 or not stderr.endswith("\n"):
        found.append(f"{len(lines)} lines on stderr, not 1")
    line = lines[0] if lines else ""
    if not line.startswith("config error: "):
        found.append(f"not a config error line: {line[:200]!r}")
    if case.expect not in line:
        found.append(f"expected {case.expect!r} in {line[:300]!r}")
    if case.file_level and not any(word in line for word in ("line", "cannot read", "regular file", "nested", "dots")):
        found.append("a syntax error that does not name the line")
    if not case.file_level and "[" not in line:
        found.append("no [section] named")
    return found


def answer_in_process(argv: list[str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `retouch ARGV` through the CLI's entry point, in this process."""
    from retouch.sync import cli

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        saved = sys.argv
        sys.argv = ["retouch", *argv]
        try:
            cli.main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:  # what a user would see as a traceback
            err.write(traceback.format_exc())
            code = 1
        finally:
            sys.argv = saved
    return code, out.getvalue(), err.getvalue()


def loads(file: str) -> bool:
    """Does the file load? Then `check` would go on to reach the (made-up) shop over the network:
    such a file is reported as accepted instead of being run."""
    from retouch.sync.config import ConfigError, load_settings

    try:
        load_settings(Path(file))
    except ConfigError:
        return False
    except Exception:  # a crash: let the CLI show it
        return False
    return True


if __name__ == "__main__":
    for file in sys.argv[1:]:
        if loads(file):
            print(json.dumps({"file": file, "code": 0, "stdout": "", "stderr": "(accepted)\n"}), flush=True)
            continue
        code, stdout, stderr = answer_in_process(["check", "-c", file])
        print(json.dumps({"file": file, "code": code, "stdout": stdout, "stderr": stderr}), flush=True)
