"""User algorithm modules (collbench/plugins.py): ``--plugin PATH_OR_MODULE`` and
``COLLBENCH_PLUGINS`` load them in every command and every rank; the results metadata names
them with their sha256; a plugin that cannot load is one line and exit status 2."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cbtest import one_job_at_a_time, read_jsonl, run_cli
from collbench import plugins
from collbench.algorithms.registry import get_algorithm, known_names
from collbench.run.launcher import OVERSUBSCRIBED_MPICH_ENV, find_mpiexec

# A copy of the ring allreduce under a new name. Inside an MPI job it leaves a marker per rank
# with the COLLBENCH_PLUGINS the rank saw, so a test can tell that every rank imported it.
MARKER_PLUGIN = '''
import os
from pathlib import Path

from collbench.algorithms import Collective, ring
from collbench.algorithms.registry import register
from collbench.run.launcher import env_rank, inside_mpi_job

if inside_mpi_job() and os.environ.get("MARKER_DIR"):
    Path(os.environ["MARKER_DIR"], f"rank{env_rank()}").write_text(os.environ.get("COLLBENCH_PLUGINS", ""))

register("NAME", Collective.ALLREDUCE, ring.allreduce, defaults={"channels": 1},
         description="the ring allreduce under another name (tests/test_plugins.py)")
'''


def write_plugin(directory: Path, stem: str, name: str) -> Path:
    path = directory / f"{stem}.py"
    path.write_text(MARKER_PLUGIN.replace("NAME", name))
    return path


@pytest.fixture
def unload_after():
    """Plugins a test loads in this process are unloaded again (the registry as it was)."""
    before = set(p.module for p in plugins.loaded())
    yield
    for plugin in plugins.loaded():
        if plugin.module not in before:
            plugins.unload(plugin)


# -- loading, in process ---------------------------------------------------------------------

def test_load_by_path_registers_records_the_sha256_and_loads_once(tmp_path, monkeypatch, unload_after):
    path = write_plugin(tmp_path, "by_path", "plugin_by_path")
    plugin = plugins.load(str(path))
    assert get_algorithm("plugin_by_path").name == "plugin_by_path"
    assert plugin.algorithms == ("plugin_by_path",)
    assert plugin.path == str(path.resolve())
    assert plugin.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert plugin.module != "by_path"                             # never shadows a real module name
    # the same file again, by another spelling: loaded once (no "already exists" error)
    monkeypatch.chdir(tmp_path)
    assert plugins.load("./by_path.py") is plugin
    assert plugins.records()[-1] == {"plugin": str(path), "module": plugin.module, "path": str(path.resolve()),
                                     "sha256": plugin.sha256, "algorithms": ["plugin_by_path"]}
    assert plugins.environment() == {plugins.ENV_VAR: os.pathsep.join(p.env_spec for p in plugins.loaded())}
    assert str(path.resolve()) in plugins.environment()[plugins.ENV_VAR].split(os.pathsep)


def test_load_by_module_name(tmp_path, monkeypatch, unload_after):
    write_plugin(tmp_path, "cb_test_plugin_module", "plugin_by_module")
    monkeypatch.syspath_prepend(str(tmp_path))
    plugin = plugins.load("cb_test_plugin_module")
    assert plugin.module == "cb_test_plugin_module" and plugin.env_spec == "cb_test_plugin_module"
    assert plugin.algorithms == ("plugin_by_module",)
    assert plugin.sha256 == hashlib.sha256((tmp_path / "cb_test_plugin_module.py").read_bytes()).hexdigest()
    assert "plugin_by_module" in known_names()


def test_environment_variable_then_options_in_order(tmp_path, monkeypatch, unload_after):
    first = write_plugin(tmp_path, "first", "plugin_first")
    second = write_plugin(tmp_path, "second", "plugin_second")
    monkeypatch.setenv(plugins.ENV_VAR, f"{first}{os.pathsep}{os.pathsep}")
    loaded = plugins.load_all([str(second), str(first)])
    assert [p.algorithms for p in loaded] == [("plugin_first",), ("plugin_second",)]


def test_a_failed_plugin_leaves_the_registry_as_it_was(tmp_path, unload_after):
    path = tmp_path / "half.py"
    path.write_text(textwrap.dedent('''
        from collbench.algorithms import Collective, ring
        from collbench.algorithms.registry import register
        register("plugin_half_done", Collective.ALLREDUCE, ring.allreduce, description="x")
        register("tree", Collective.ALLGATHER, ring.allgather, description="tree gains allgather")
    '''))
    before = {name: get_algorithm(name) for name in known_names()}
    with pytest.raises(plugins.PluginError, match="registers 'tree', a name that already exists"):
        plugins.load(str(path))
    assert {name: get_algorithm(name) for name in known_names()} == before
    assert all(p.path != str(path.resolve()) for p in plugins.loaded())


# -- commands --------------------------------------------------------------------------------

def test_list_and_verify_with_a_plugin(tmp_path):
    write_plugin(tmp_path, "cb_listed", "plugin_listed")
    listing = run_cli(["list", "--plugin", "cb_listed", "--ranks", "3"], cwd=tmp_path,
                      env={"PYTHONPATH": str(tmp_path)})          # by module name
    assert listing.returncode == 0, listing.stderr
    assert any(line.split()[:2] == ["allreduce", "plugin_listed"] for line in listing.stdout.splitlines())
    verify = run_cli(["verify", "--plugin", "cb_listed.py", "--algo", "plugin_listed", "--max-ranks", "5",
                      "--extra-ranks", "none", "-j", "2"], cwd=tmp_path)   # by path, on a worker pool
    assert verify.returncode == 0, verify.stderr
    assert "plugin_listed  allreduce   1-5" in verify.stdout and "all correct" in verify.stdout
    exported = run_cli(["verify", "--algo", "plugin_listed", "--max-ranks", "3", "--extra-ranks", "none", "-j", "1"],
                       cwd=tmp_path, env={plugins.ENV_VAR: str(tmp_path / "cb_listed.py")})
    assert exported.returncode == 0 and "all correct" in exported.stdout, exported.stderr
    missing = run_cli(["verify", "--algo", "plugin_listed", "--max-ranks", "2"], cwd=tmp_path)
    assert missing.returncode == 2 and "unknown algorithm 'plugin_listed'" in missing.stderr


@pytest.mark.mpi
def test_the_launcher_hands_plugins_to_every_rank_and_the_results_name_them(tmp_path):
    path = write_plugin(tmp_path, "ranked", "plugin_ranked")
    (tmp_path / "marks").mkdir()
    result = run_cli(["run", "allreduce", "--plugin", "ranked.py", "--algo", "plugin_ranked", "-np", "3",
                      "-b", "8", "-e", "8", "-w", "1", "-n", "2", "--out", "out.jsonl"], cwd=tmp_path,
                     env={"MARKER_DIR": str(tmp_path / "marks")})
    assert result.returncode == 0, result.stderr
    # every rank imported it, and saw the absolute path in COLLBENCH_PLUGINS
    marks = {p.name: p.read_text() for p in (tmp_path / "marks").iterdir()}
    assert marks == {f"rank{r}": str(path.resolve()) for r in range(3)}
    meta, *rows = read_jsonl(tmp_path / "out.jsonl")
    [record] = meta["plugins"]
    assert record["path"] == str(path.resolve()) and record["algorithms"] == ["plugin_ranked"]
    assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert "differs_on_ranks" not in record
    assert {r["algorithm"] for r in rows if r.get("type") == "row"} == {"plugin_ranked"}


@pytest.mark.mpi
def test_ranks_of_a_users_own_mpiexec_load_COLLBENCH_PLUGINS(tmp_path):
    path = write_plugin(tmp_path, "exported", "plugin_exported")
    (tmp_path / "marks").mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PMI_RANK", "PMIX_RANK", "COLLBENCH_LAUNCHED")}
    env.update(OVERSUBSCRIBED_MPICH_ENV, MARKER_DIR=str(tmp_path / "marks"), COLLBENCH_PLUGINS=str(path))
    with one_job_at_a_time():
        result = subprocess.run([str(find_mpiexec()), "-n", "3", sys.executable, "-m", "collbench", "run",
                                 "allreduce", "--algo", "plugin_exported", "-b", "8", "-e", "8", "-w", "1",
                                 "-n", "2", "--out", "out.jsonl"], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "marks").iterdir()) == ["rank0", "rank1", "rank2"]
    assert read_jsonl(tmp_path / "out.jsonl")[0]["plugins"][0]["algorithms"] == ["plugin_exported"]


# -- errors: one line naming the plugin, exit status 2, nothing run ---------------------------

SYNTAX_ERROR = "from collbench.algorithms import Collective\n\ndef broken(:\n    pass\n"
RAISES = "x = 1\ny = x / 0\n"
TAKES_RING = ("from collbench.algorithms import Collective, ring\n"
              "from collbench.algorithms.registry import register\n"
              "register('Ring', Collective.ALLTOALLV, ring.allgather, description='not mine')\n")


@pytest.mark.parametrize("files, args, message", [
    ({}, ["list", "--plugin", "missing.py"], "plugin 'missing.py': no such file"),
    ({}, ["verify", "--plugin", "no_such_plugin_module", "--algo", "ring"],
     "plugin 'no_such_plugin_module': no module named 'no_such_plugin_module'"),
    ({"syntax.py": SYNTAX_ERROR}, ["verify", "--plugin", "syntax.py"], "plugin 'syntax.py': syntax error ("),
    ({"raises.py": RAISES}, ["model", "predict", "--plugin", "raises.py"],
     "plugin 'raises.py': importing it raised ZeroDivisionError: division by zero ("),
    ({"ring_again.py": TAKES_RING}, ["run", "--plugin", "ring_again.py", "-np", "2", "-e", "64"],
     "plugin 'ring_again.py' registers 'ring', a name that already exists"),
])
def test_a_plugin_that_cannot_load_is_one_line_and_exit_2(tmp_path, files, args, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    result = run_cli(args, cwd=tmp_path, timeout=60)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"collbench: error: {message}"), lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    if files:  # the line points at the user's file and line
        assert f"{tmp_path.resolve() / next(iter(files))}, line" in lines[0] or "registers" in lines[0]
    assert not list(tmp_path.rglob("*.jsonl"))


def test_two_plugins_registering_one_name(tmp_path):
    write_plugin(tmp_path, "one", "plugin_twice")
    write_plugin(tmp_path, "two", "plugin_twice")
    result = run_cli(["list", "--plugin", "one.py", "--plugin", "two.py"], cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == ("collbench: error: plugin 'two.py' registers 'plugin_twice', a name that "
                                     "already exists (built in or from another plugin); give its algorithm a new name")


# -- a plugin that registers nothing: one line naming it ----------------------------------------

def test_a_directory_given_as_a_module_name_is_refused(tmp_path, monkeypatch, unload_after):
    (tmp_path / "cb_plugin_dir").mkdir()  # no __init__.py: Python imports it as a namespace package
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(plugins.PluginError, match=r"plugin 'cb_plugin_dir': .*cb_plugin_dir is a directory "
                       r"without __init__.py, not a plugin module: it registers no algorithm"):
        plugins.load("cb_plugin_dir")
    assert "cb_plugin_dir" not in sys.modules and not plugins.loaded()


def test_a_file_that_registers_nothing_is_refused(tmp_path, unload_after):
    path = tmp_path / "helpers.py"
    path.write_text("def helper():\n    return 1\n")
    with pytest.raises(plugins.PluginError, match=r"plugin '.*helpers.py': registers no algorithm \(.*helpers.py "
                       r"ran without calling collbench.algorithms.registry.register\)"):
        plugins.load(str(path))
    assert all(p.path != str(path.resolve()) for p in plugins.loaded())


def test_a_module_another_plugin_imported_first_is_not_an_error(tmp_path, monkeypatch, unload_after):
    write_plugin(tmp_path, "cb_shared_algos", "plugin_shared")
    (tmp_path / "cb_outer.py").write_text(textwrap.dedent('''
        import cb_shared_algos  # registers plugin_shared
        from collbench.algorithms import Collective, ring
        from collbench.algorithms.registry import register
        register("plugin_outer", Collective.ALLREDUCE, ring.allreduce, defaults={"channels": 1},
                 description="x")
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    outer, shared = plugins.load_all(["cb_outer", "cb_shared_algos"], environ=False)
    assert outer.algorithms == ("plugin_shared", "plugin_outer") and shared.algorithms == ()
    sys.modules.pop("cb_shared_algos", None)  # unload_after drops cb_outer only


def test_a_plugin_directory_on_the_command_line_is_one_line(tmp_path):
    (tmp_path / "somedir").mkdir()
    result = run_cli(["list", "--plugin", "somedir"], cwd=tmp_path, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().startswith(
        f"collbench: error: plugin 'somedir': {tmp_path.resolve() / 'somedir'} is a directory without __init__.py")
    assert "Traceback" not in result.stderr + result.stdout and not result.stdout
