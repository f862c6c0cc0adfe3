"""A clone with nothing beside it: the unit tests run there, every README command that needs no
server works there as written, and no committed file points outside the repository."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# README commands that run without `ordo up`: they need no database, or stop before opening one.
_SERVERLESS = re.compile(r"(^|\| )ordo (preview|tool|solve|task add -)(?=\s|$)")


def _tracked_files() -> list[str]:
    """What a clone holds: the files git tracks, plus new ones it does not ignore (not yet committed)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [name for name in listed.split("\0") if name and (REPO / name).is_file()]


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.fail("these tests copy what git tracks: run them from a git checkout")
    target = tmp_path_factory.mktemp("fresh") / "ordo"
    for name in _tracked_files():
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, destination)
    return target


@pytest.fixture(scope="module")
def env(clone: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """No database settings, and `ordo` running the clone's code (python -m from its directory)."""
    bin_dir = tmp_path_factory.mktemp("bin")
    shim = bin_dir / "ordo"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m cli.main "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    clean = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "ORDO_DATA_DIR")}
    return {**clean, "PATH": f"{bin_dir}{os.pathsep}{clean.get('PATH', '')}"}


def test_the_clone_runs_its_own_code(clone: Path, env: dict[str, str]) -> None:
    probe = subprocess.run(
        [sys.executable, "-c", "import cli.main, store; print(cli.main.__file__)"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(probe.stdout.strip()).resolve().is_relative_to(clone.resolve())


@pytest.mark.timeout(1200)  # the whole unit suite once more, in the clone: longer than one test's default
def test_the_unit_tests_pass_in_a_fresh_clone(clone: Path, env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/unit", "-q", "-x", "-p", "no:cacheprovider"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout.splitlines()[-1]


def _readme_commands() -> list[tuple[str, str | None]]:
    """(command, the output the README shows for it, if it shows one) for each serverless command."""
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```(\w*)\n(.*?)```", readme, re.DOTALL)
    found: list[tuple[str, str | None]] = []
    for i, (lang, body) in enumerate(blocks):
        if lang != "sh":
            continue
        commands = [c for c in body.replace("\\\n", " ").splitlines() if _SERVERLESS.search(c)]
        shown = blocks[i + 1][1] if i + 1 < len(blocks) and blocks[i + 1][0] == "text" else None
        found += [(c, shown if len(commands) == 1 else None) for c in commands]
    return found


COMMANDS = _readme_commands()


def test_the_readme_has_serverless_commands() -> None:
    assert {c.split("ordo ", 1)[1].split()[0] for c, _ in COMMANDS} >= {"preview", "tool", "solve", "task"}


@pytest.mark.parametrize(("command", "shown"), COMMANDS, ids=[c[:60] for c, _ in COMMANDS])
def test_a_readme_command_runs_as_written_in_a_fresh_clone(
    clone: Path, env: dict[str, str], command: str, shown: str | None
) -> None:
    """Each runs from the clone's directory; one whose comment says `exit code 2` must fail exactly so,
    and where the README shows the output, the output is that."""
    result = subprocess.run(
        ["bash", "-c", command], cwd=clone, env=env, capture_output=True, text=True, timeout=300
    )
    expected = 2 if "exit code 2" in command else 0
    assert result.returncode == expected, (result.stdout[-2000:], result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    if shown is not None:
        assert result.stdout == shown
    assert not (clone / ".ordo").exists(), "a command that needs no server created a data directory"


def test_no_committed_file_points_outside_the_repository() -> None:
    """No machine path and no path to a sibling of the repository, in any text file git tracks."""
    pattern = re.compile(r"(/work/|/home/\w|/root/|/Users/\w|\.\./shared/|/shared/data/)")
    offenders = []
    for name in _tracked_files():
        try:
            text = (REPO / name).read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary files: images, vendored archives
        if name != "tests/acceptance/test_fresh_clone.py" and (match := pattern.search(text)):
            offenders.append(f"{name}: {match.group(0)}")
    assert not offenders, offenders
