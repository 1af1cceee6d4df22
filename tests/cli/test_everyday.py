"""Everyday use from a terminal and from scripts: output that pipes, ls/cat/du/diff, consistent commands."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from datastore.testing.cli import DATASTORE
from tests.cli.test_cli import assert_one_line_error
from tests.conftest import Cli, make_tree

MANY = 6000  # enough paths that `ls -R` outgrows a pipe's buffer (64 KiB) and `| head -1` closes it early

V1 = {"README.md": b"hello\n", "train/0.bin": b"\x00" * 100, "train/1.bin": b"\x01" * 200,
      "val/a b.txt": "ünïcode\n".encode(), **{f"many/f{i:05d}": b"%d" % i for i in range(MANY)}}
V2 = {**V1, "train/1.bin": b"\x02" * 250, "train/2.bin": b"\x03" * 50}
V3 = {k: v for k, v in V2.items() if k != "README.md"}


def sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


class Versions:
    """A datastore ``ds`` with three versions (V1, V2, V3) in a store of its own, and a CLI on it."""

    def __init__(self, cli: Cli, store: str) -> None:
        self.cli, self.store = cli, store

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        return self.cli.run(*args, DATASTORE_STORE=self.store, **env)

    def shell(self, line: str) -> subprocess.CompletedProcess:
        """``line`` in bash, ``datastore`` meaning the console script (for pipelines)."""
        script = line.replace("datastore ", f"{shlex.quote(str(DATASTORE))} ")
        return subprocess.run(["bash", "-c", script], env=self.cli.env(DATASTORE_STORE=self.store),
                              capture_output=True, text=True, timeout=300)

    def terminal(self, line: str, columns: int) -> str:
        """What ``datastore LINE`` draws on a terminal ``columns`` wide (under ``script``), colours dropped."""
        cmd = f"{shlex.quote(str(DATASTORE))} {line}"
        proc = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, text=True, timeout=300,
                              env=self.cli.env(DATASTORE_STORE=self.store, COLUMNS=str(columns), TERM="xterm"),
                              stdin=subprocess.DEVNULL)
        return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", proc.stdout).replace("\r\n", "\n")


@pytest.fixture(scope="module")
def ds(cli_home: Path, cli_prefect: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Versions]:
    root = tmp_path_factory.mktemp("everyday")
    v = Versions(Cli(cli_home, cli_prefect), str(root / "store"))
    for n, tree in enumerate((V1, V2, V3), start=1):
        src = root / f"src{n}"
        make_tree(src, tree)
        done = v.run("create", str(src), "--name", "ds")
        assert done.returncode == 0, done.stderr
    yield v


# --- output that pipes ------------------------------------------------------------------------


def test_list_piped_is_one_full_tab_separated_line_per_version(ds: Versions) -> None:
    got = ds.run("list")
    assert got.returncode == 0 and got.stderr == ""
    rows = [line.split("\t") for line in got.stdout.splitlines()]
    assert [r[:5] for r in rows] == [["ds", str(n), "succeeded", str(len(t)), r[4]] for n, t, r in zip((1, 2, 3), (V1, V2, V3), rows)]
    assert all(len(r) == 7 and r[6].startswith("local: ") and r[6].endswith(f"src{n}") for n, r in enumerate(rows, 1))
    grepped = ds.shell("datastore list | grep -c src2")
    assert grepped.stdout.strip() == "1"


def test_show_piped_prints_key_tab_value_with_full_values(ds: Versions) -> None:
    rec = json.loads(ds.run("show", "ds@2", "--json").stdout)
    got = ds.shell("datastore show ds@2 | grep ^digest")
    assert got.stdout == f"digest\t{rec['digest']}\n"  # all 64 hex characters, on one line
    pairs = dict(line.split("\t", 1) for line in ds.run("show", "ds", "--version", "2").stdout.splitlines())
    assert (pairs["name"], pairs["version"], pairs["files"], pairs["size"]) == ("ds", "2", str(len(V2)), pairs["size"])
    assert pairs["size"].endswith(f"({rec['bytes']} bytes)")


def test_a_closed_pipe_ends_the_command_quietly_with_status_0(ds: Versions) -> None:
    for line in ("datastore ls ds -R | head -1", "datastore list | head -1", "datastore ls ds -R --json | head -2",
                 "datastore diff ds@1 ds@3 | head -1"):
        got = ds.shell(f"{line}; echo \"status ${{PIPESTATUS[0]}}\"")
        assert got.stderr == "", (line, got.stderr)
        assert got.stdout.splitlines()[-1] in ("status 0", "status 1" if "diff" in line else "status 0"), (line, got.stdout)
    got = ds.shell("datastore ls ds -R | head -1; echo \"status ${PIPESTATUS[0]}\"")
    assert got.stdout == "many/f00000\nstatus 0\n"  # the latest version, V3, has no README.md


@pytest.mark.skipif(shutil.which("script") is None, reason="needs script (util-linux) to give the CLI a terminal")
def test_list_on_a_terminal_drops_columns_to_fit_and_never_cuts_a_name(ds: Versions) -> None:
    wide = ds.terminal("list", 120)
    header = wide.splitlines()[1]
    assert [c.strip() for c in header.strip("┃").split("┃")] == ["name", "version", "status", "files", "size",
                                                                 "created (UTC)", "source"]
    narrow = ds.terminal("list", 60)
    lines = narrow.splitlines()
    assert all(len(line) <= 60 for line in lines), narrow
    assert [c.strip() for c in lines[1].strip("┃").split("┃")] == ["name", "version", "status", "size"]
    assert [c.strip() for c in lines[3].strip("│").split("│")][:3] == ["ds", "1", "succeeded"]
    assert "…" not in narrow


# --- ls, cat, du, diff ------------------------------------------------------------------------


def test_ls_lists_a_folder_from_the_manifest(ds: Versions) -> None:
    assert ds.run("ls", "ds").stdout == "many/\ntrain/\nval/\n"  # version 3: README.md is gone
    assert ds.run("ls", "ds@1").stdout == "README.md\nmany/\ntrain/\nval/\n"
    assert ds.run("ls", "ds@2", "train").stdout == "train/0.bin\ntrain/1.bin\ntrain/2.bin\n"
    long = ds.run("ls", "ds@2", "./train/", "-l").stdout.splitlines()
    assert long == [f"{len(V2[p])}\t{sha(V2[p])}\t{p}" for p in ("train/0.bin", "train/1.bin", "train/2.bin")]
    assert ds.run("ls", "ds@1", "-l").stdout.splitlines()[1] == "-\t-\tmany/"
    rec = ds.run("ls", "ds", "-R")
    assert rec.stdout.splitlines() == sorted(V3)
    assert json.loads(ds.run("ls", "ds", "val", "--json").stdout) == [
        {"path": "val/a b.txt", "type": "file", "size": len(V3["val/a b.txt"]), "checksum": sha(V3["val/a b.txt"])}]


def test_ls_du_cat_of_what_is_not_there_say_so(ds: Versions) -> None:
    assert_one_line_error(ds.run("ls", "ds", "nope"), "datastore 'ds' version 3 has no file or folder 'nope'",
                          "'datastore ls ds@3' lists its top level")
    assert_one_line_error(ds.run("cat", "ds@1", "train"), "'train' is a folder in datastore 'ds' version 1",
                          "'datastore ls ds@1 train' lists it")
    assert_one_line_error(ds.run("cat", "ds", "README.md"), "has no file or folder 'README.md'")
    assert_one_line_error(ds.run("du", "ds@9"), "datastore 'ds' version 9 does not exist")


def test_cat_writes_the_checked_bytes(ds: Versions) -> None:
    got = subprocess.run([str(DATASTORE), "cat", "ds@1", "val/a b.txt"], capture_output=True, timeout=120,
                         env=ds.cli.env(DATASTORE_STORE=ds.store))
    assert got.returncode == 0 and got.stdout == V1["val/a b.txt"]
    assert ds.shell("datastore cat ds@2 train/1.bin | wc -c").stdout.strip() == "250"


def test_du_counts_each_folder_and_the_total(ds: Versions) -> None:
    def folder(prefix: str) -> tuple[int, int]:
        files = [v for k, v in V2.items() if k.startswith(prefix)]
        return sum(map(len, files)), len(files)

    lines = ds.run("du", "ds@2").stdout.splitlines()
    assert lines == [f"{b}\t{n}\t{p}" for p in ("many/", "train/", "val/") for b, n in [folder(p)]] + [
        f"{sum(map(len, V2.values()))}\t{len(V2)}\t."]
    assert ds.run("du", "ds@2", "train", "-s").stdout == "%d\t3\ttrain/\n" % folder("train/")[0]
    assert json.loads(ds.run("du", "ds@2", "-s", "--json").stdout)["total"] == {
        "path": ".", "files": len(V2), "bytes": sum(map(len, V2.values()))}


def test_diff_lists_added_removed_changed_and_exits_1_when_they_differ(ds: Versions) -> None:
    got = ds.run("diff", "ds@1", "ds@2")
    assert got.returncode == 1
    assert got.stdout == f"changed\ttrain/1.bin\t200\t250\nadded\ttrain/2.bin\t\t50\n"
    assert got.stderr.strip() == "1 added, 0 removed, 1 changed (+100 B): ds@1 → ds@2"
    assert ds.run("diff", "ds@2", "ds").stdout == "removed\tREADME.md\t6\t\n"
    same = ds.run("diff", "ds@3", "ds")
    assert (same.returncode, same.stdout, same.stderr.strip()) == (0, "", "no differences: ds@3 → ds@3")
    as_json = json.loads(ds.run("diff", "ds@1", "ds@3", "--json").stdout)
    assert [(c["change"], c["path"], c["old_size"], c["new_size"]) for c in as_json] == [
        ("removed", "README.md", 6, None), ("changed", "train/1.bin", 200, 250), ("added", "train/2.bin", None, 50)]


@pytest.mark.skipif(shutil.which("script") is None, reason="needs script (util-linux) to give the CLI a terminal")
def test_diff_and_ls_on_a_terminal(ds: Versions) -> None:
    assert ds.terminal("diff ds@1 ds@3", 120).splitlines() == [
        "- README.md (6 B)", "~ train/1.bin (200 B → 250 B)", "+ train/2.bin (50 B)",
        "1 added, 1 removed, 1 changed (+94 B): ds@1 → ds@3"]
    assert ds.terminal("ls ds@2 train -l", 120).splitlines()[0] == f"{'100 B':>10}  {sha(V2['train/0.bin'])}  train/0.bin"


# --- one shape for every command --------------------------------------------------------------


def test_delete_takes_the_name_as_an_argument_like_every_other_command(cli: Cli, tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    src = make_tree(tmp_path / "src", {"a": b"a"})
    for n in range(4):
        (src / "a").write_bytes(b"a%d" % n)
        assert cli.run("create", str(src), "--name", "d", DATASTORE_STORE=store).returncode == 0
    assert cli.run("delete", "d", "--version", "1", DATASTORE_STORE=store).stdout.startswith("deleted d version 1 ")
    assert cli.run("delete", "d@2", DATASTORE_STORE=store).stdout.startswith("deleted d version 2 ")
    assert cli.run("delete", "--name", "d", "--version", "3", DATASTORE_STORE=store).stdout.startswith("deleted d version 3 ")
    assert_one_line_error(cli.run("delete", "d", "--name", "e", "--version", "4", DATASTORE_STORE=store),
                          "NAME 'd' and --name 'e' disagree", "give the name once")
    assert_one_line_error(cli.run("delete", "d@4", "--all", DATASTORE_STORE=store), "'d@4' names one version and --all every")
    assert [line.split("\t")[1] for line in cli.run("list", DATASTORE_STORE=store).stdout.splitlines()] == ["4"]


def test_list_of_an_unknown_name_and_a_stray_argument_are_errors(cli: Cli, tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    assert_one_line_error(cli.run("list", "nope", DATASTORE_STORE=store), "datastore 'nope' does not exist")
    empty = cli.run("list", DATASTORE_STORE=store)
    assert (empty.returncode, empty.stdout, empty.stderr.strip()) == (
        0, "", "no datastores yet: create one with 'datastore create PATH'")
    got = cli.run("create", str(tmp_path / "my"), "folder", DATASTORE_STORE=store)
    assert got.returncode == 2 and got.stderr.strip() == (
        "error: got unexpected extra argument(s) (folder): quote a path or name that has spaces, "
        "e.g. datastore create \"my folder\"")
