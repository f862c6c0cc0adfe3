"""Which data directory a command uses (cli.datadir), and one `ordo up` per directory."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli import datadir
from store.errors import ConfigError


def test_the_nearest_ordo_directory_up_the_tree_is_used(tmp_path: Path) -> None:
    (tmp_path / "project" / ".ordo").mkdir(parents=True)
    deep = tmp_path / "project" / "src" / "lib"
    deep.mkdir(parents=True)

    assert datadir.locate(deep, {}) == (tmp_path / "project" / ".ordo").resolve()
    assert datadir.locate(tmp_path / "project", {}) == (tmp_path / "project" / ".ordo").resolve()


def test_without_one_a_new_directory_is_planned_here(tmp_path: Path) -> None:
    assert datadir.locate(tmp_path, {}) == (tmp_path / ".ordo").resolve()


def test_ordo_data_dir_wins_and_is_read_from_the_current_directory(tmp_path: Path) -> None:
    (tmp_path / ".ordo").mkdir()
    assert datadir.locate(tmp_path, {"ORDO_DATA_DIR": "elsewhere"}) == (tmp_path / "elsewhere").resolve()
    assert datadir.locate(tmp_path, {"ORDO_DATA_DIR": "/abs/dir"}) == Path("/abs/dir")


def test_a_new_directory_is_announced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    datadir.announce_if_new(tmp_path / ".ordo")
    (tmp_path / ".ordo" / "pg").mkdir(parents=True)
    datadir.announce_if_new(tmp_path / ".ordo")

    err = capsys.readouterr().err
    assert err.count("creating a new one") == 1 and str(tmp_path / ".ordo") in err


def test_a_directory_is_claimed_by_one_process_at_a_time(tmp_path: Path) -> None:
    """The claim is a lock held by the process: another process is refused with its holder's pid."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from pathlib import Path\n"
            "from cli import datadir\n"
            f"with datadir.claim(Path({str(tmp_path)!r})):\n"
            "    print('held', flush=True)\n"
            "    time.sleep(30)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError) as error, datadir.claim(tmp_path):
            pass
        assert f"pid {holder.pid}" in error.value.message
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
    with datadir.claim(tmp_path):  # free again once the holder is gone
        assert (tmp_path / "ordo-up.lock").read_text().strip() == str(os.getpid())
