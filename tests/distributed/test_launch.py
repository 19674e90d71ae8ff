"""`kiln run`: the mpiexec command and the environment it builds (nothing is started)."""
from __future__ import annotations

import os
import sys

import pytest

from kiln.distributed import launch


def parse(*argv):
    return launch.parse_args(argv)


def test_command_runs_every_rank_under_its_supervisor(capsys):
    assert launch.main(["-n", "4", "--dry-run", "train.py", "--epochs", "3"]) == 0
    cmd = capsys.readouterr().out.split()
    assert cmd[1:4] == ["-disable-auto-cleanup", "-n", "4"]
    assert cmd[4:] == [sys.executable, launch.command(parse("-n", "1", "x"))[-2], "train.py",
                       "--epochs", "3"]
    assert cmd[-4].endswith("kiln/distributed/supervise.py")


def test_hosts_and_options_map_to_mpiexec():
    ns = parse("-n", "8", "--hostfile", "hosts", "--ppn", "4", "--tag-output",
               "--output-dir", "logs", "-m", "pkg.train", "--lr", "0.1")
    cmd = launch.command(ns)
    assert ["-f", "hosts"] == cmd[4:6] and ["-ppn", "4"] == cmd[6:8]
    assert "-prepend-rank" in cmd and f"logs{os.sep}rank%r.err" in cmd
    assert cmd[-4:] == ["-m", "pkg.train", "--lr", "0.1"]
    assert launch.command(parse("-n", "2", "--hosts", "a,b", "t.py"))[4:6] == ["-hosts", "a,b"]
    extra = launch.command(parse("-n", "2", "--mpiexec-args", "-iface eth0", "t.py"))
    assert extra[4:6] == ["-iface", "eth0"]


def test_each_rank_gets_its_share_of_the_cores():
    cores = len(os.sched_getaffinity(0))
    env = launch.environment(parse("-n", "2", "--timeout", "60", "t.py"), base={})
    assert env["OMP_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == str(max(1, cores // 2))
    assert env["KILN_DIST_TIMEOUT"] == "60.0"
    kept = launch.environment(parse("-n", "2", "t.py"), base={"OMP_NUM_THREADS": "3"})
    assert kept["OMP_NUM_THREADS"] == "3"
    forced = launch.environment(parse("-n", "2", "--threads", "5", "t.py"),
                                base={"OMP_NUM_THREADS": "3"})
    assert forced["OMP_NUM_THREADS"] == forced["KILN_NUM_THREADS"] == "5"


def test_usage_errors(capsys):
    with pytest.raises(SystemExit) as e:
        launch.main(["-n", "2"])
    assert e.value.code == 2 and "give a script to run" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        launch.main(["-n", "0", "t.py"])


def test_missing_mpiexec_says_how_to_install_it(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    assert launch.main(["-n", "2", "t.py"]) == 1
    assert "pip install mpi4py mpich" in capsys.readouterr().err


@pytest.mark.parametrize("argv, script, module, args", [
    (["-n", "2", "train.py", "--", "--x"], "train.py", None, ["--", "--x"]),
    (["-n", "2", "train.py", "--x", "--", "y", "-n", "3"], "train.py", None,
     ["--x", "--", "y", "-n", "3"]),
    (["-n", "2", "-m", "pkg.train", "--", "--x"], None, "pkg.train", ["--", "--x"]),
    (["-n", "2", "--", "train.py", "--", "a"], "train.py", None, ["--", "a"]),
    (["-n", "2", "--timeout", "5", "train.py", "-m", "x"], "train.py", None, ["-m", "x"]),
])
def test_the_programs_arguments_pass_through_verbatim(argv, script, module, args):
    ns = parse(*argv)
    assert (ns.script, ns.module, ns.args) == (script, module, args)
    assert launch.command(ns)[-len(args):] == args
