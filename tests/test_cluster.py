"""`--cluster` on `gridar batch` and `gridar bench`: a local Ray instance in this process (2 CPU workers) against
the same commands run here. The images and the report must be the same; a worker killed mid-run loses no job; an
interrupted batch resumes without redoing or losing any.

Each worker has one CPU and so one torch thread; the runs here are given one thread too, so both do the same
arithmetic (with two threads the scorer's probabilities differ in their last bits)."""
import json
import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ray = pytest.importorskip("ray")

from gridar_desktop import batch as batch_mod  # noqa: E402
from gridar_desktop.cli import main as cli_main  # noqa: E402
from gridar_desktop.io.png import read_metadata  # noqa: E402

pytestmark = pytest.mark.slow

PROMPTS = [("a red circle", "single"), ("two blue squares", "counting"), ("a green triangle above a red square",
                                                                          "relation")]
# 3 prompts in batches of 3: one unit per seed, so each of the two workers gets one
BATCH = ["--model", "demo", "--method", "best-of-n", "-n", "2", "--seeds", "0,1", "--batch", "3", "--device", "cpu"]
BENCH = ["--model", "demo", "--methods", "single:1,best-of-n:2", "--seeds", "0,1", "--batch", "3", "--device", "cpu"]


def timeless(x):
    """Wall-clock times differ from run to run; everything else must not."""
    if isinstance(x, dict):
        return {k: timeless(v) for k, v in x.items() if "seconds" not in k}
    if isinstance(x, list):
        return [timeless(v) for v in x]
    return x


def results(folder: Path) -> dict[str, dict]:
    return {x["file"]: x for x in map(json.loads, (folder / "results.jsonl").read_text().splitlines())}


def same_images(a: Path, b: Path) -> None:
    ra, rb = results(a), results(b)
    assert sorted(ra) == sorted(rb) and len(ra) == 6
    for name in ra:
        assert timeless(ra[name]) == timeless(rb[name])
        assert np.array_equal(np.asarray(Image.open(a / name)), np.asarray(Image.open(b / name))), name
        ma, mb = read_metadata(a / name), read_metadata(b / name)
        assert timeless(ma) == timeless(mb), name


@pytest.fixture(scope="module")
def prompts(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("cluster") / "p.jsonl"
    p.write_text("".join(json.dumps({"prompt": t, "category": c}) + "\n" for t, c in PROMPTS))
    return p


@pytest.fixture(scope="module")
def local(prompts, tmp_path_factory):
    """The batch and the bench run in this process, on one torch thread like each worker."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        d = tmp_path_factory.mktemp("local")
        assert cli_main(["batch", str(prompts), "--out", str(d / "images"), *BATCH]) == 0
        assert cli_main(["bench", "--prompts", str(prompts), *BENCH, "--out", str(d / "bench.json")]) == 0
    finally:
        torch.set_num_threads(threads)
    return d / "images", json.loads((d / "bench.json").read_text())


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def wait_for_free_cpus(n: int = 2, timeout: float = 60.0) -> bool:
    """The workers of a finished run give their CPUs back (ended asynchronously)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if ray.available_resources().get("CPU", 0) >= n:
            return True
        time.sleep(0.2)
    return False


def test_cluster_batch_and_bench_match_the_local_run(cluster, local, prompts, tmp_path, capsys):
    images, report = local
    out = tmp_path / "images"
    assert cli_main(["batch", str(prompts), "--out", str(out), *BATCH, "--cluster", "auto"]) == 0
    assert "2 worker(s) on cpu" in capsys.readouterr().err
    same_images(images, out)
    assert wait_for_free_cpus()
    assert cli_main(["bench", "--prompts", str(prompts), *BENCH, "--cluster", "auto",
                     "--out", str(tmp_path / "bench.json")]) == 0
    assert timeless(json.loads((tmp_path / "bench.json").read_text())) == timeless(report)
    assert wait_for_free_cpus()


def test_a_killed_worker_loses_no_job(cluster, local, prompts, tmp_path, monkeypatch, capsys):
    """The worker given the second unit is killed (SIGKILL, as the out-of-memory killer does) right after it gets
    it: that unit runs on another worker, and every job is saved exactly once."""
    from gridar_desktop.cluster import Cluster
    dispatched, killed, saved = [], [], []

    def kill_second(self, actor, unit):
        dispatched.append(unit.key)
        if len(dispatched) == 2:
            pid = self.info[actor._actor_id]["pid"]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    monkeypatch.setattr(Cluster, "_dispatched", kill_second)
    real_save = batch_mod.BatchFolder.save
    monkeypatch.setattr(batch_mod.BatchFolder, "save", lambda self, o: (saved.append(o.job), real_save(self, o)))
    out = tmp_path / "images"
    assert cli_main(["batch", str(prompts), "--out", str(out), *BATCH, "--cluster", "auto"]) == 0
    err = capsys.readouterr().err
    assert killed and f"worker {killed[0]} on" in err and "was lost" in err and "try 2 of 3" in err
    assert dispatched.count(dispatched[1]) == 2                   # the lost unit, given out again
    assert len(saved) == 6 and len(set(saved)) == 6
    same_images(local[0], out)
    assert wait_for_free_cpus()


def test_an_interrupted_cluster_batch_resumes_without_redoing_or_losing_a_job(cluster, local, prompts, tmp_path,
                                                                               monkeypatch, capsys):
    out = tmp_path / "images"
    real_update, real_save = batch_mod.Progress.update, batch_mod.BatchFolder.save
    saved = []

    def ctrl_c_after_three(self, ok=True):
        real_update(self, ok)
        if self.done == 3:                                        # one unit (one seed) saved, the other running
            raise KeyboardInterrupt
    monkeypatch.setattr(batch_mod.Progress, "update", ctrl_c_after_three)
    monkeypatch.setattr(batch_mod.BatchFolder, "save", lambda self, o: (saved.append(o.job), real_save(self, o)))
    assert cli_main(["batch", str(prompts), "--out", str(out), *BATCH, "--cluster", "auto"]) == 130
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "interrupted; 3 of 6 images are in" in err
    assert wait_for_free_cpus(), "the workers were not ended"
    first = {j.file_name: (out / j.file_name).stat().st_mtime_ns for j in saved}
    assert sorted(first) == sorted(results(out)) and len(first) == 3

    monkeypatch.setattr(batch_mod.Progress, "update", real_update)
    saved.clear()
    assert cli_main(["batch", str(prompts), "--out", str(out), *BATCH, "--cluster", "auto"]) == 0
    assert not {j.file_name for j in saved} & set(first) and len(saved) == 3      # none redone, none lost
    assert {n: (out / n).stat().st_mtime_ns for n in first} == first
    same_images(local[0], out)
    shutil.rmtree(out)
    assert wait_for_free_cpus()


def test_a_worker_that_cannot_load_the_model_says_why_in_one_line(cluster, prompts, tmp_path, capsys):
    out = tmp_path / "images"
    # a device the workers' torch does not have (a bad dtype is refused by the parser before any worker starts)
    import torch
    if torch.cuda.is_available():
        pytest.skip("the workers here have a CUDA GPU")
    args = [a for a in BATCH]
    args[args.index("--device") + 1] = "cuda"
    assert cli_main(["batch", str(prompts), "--out", str(out), *args, "--cluster", "auto"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "could not load the model" in err[-1] and "sees no CUDA GPU" in err[-1] and "Traceback" not in "".join(err)
    assert not (out / "results.jsonl").read_text()
    assert wait_for_free_cpus()
