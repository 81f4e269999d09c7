"""Data-parallel training: batch sharding, 2 gloo processes under torchrun and `recforge train --nproc 2`."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from recforge.cli.main import app
from recforge.data.splitting import user_ratio_split, write_tsv
from recforge.data.synthetic import make_synthetic
from recforge.evaluation.evaluate import evaluate_topn
from recforge.registry import create_model, load_model
from recforge.testing import tiny_interactions
from recforge.training.sampling import BatchShard, batch_indices, sharded_batches

WORKER = Path(__file__).with_name("ddp_worker.py")
#: a stuck collective fails the test instead of hanging CI
TIMEOUT_S = 300
#: on the synthetic data below MF beats popularity by 0.05 NDCG@10 (0.352 vs 0.302), 120 steps
MF_SETTINGS = {"epochs": 12, "embedding_dim": 16, "batch_size": 2048, "learning_rate": 0.02, "threads": 1,
               "device": "cpu"}
#: one process's NDCG@10 varies by σ ≈ 0.005 over seeds; 1 vs 2 processes differed by 0.001–0.007
#: over three seeds: 0.03 is over 4σ of a difference of two runs
SAME_QUALITY = 0.03


def _run(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run `cmd` in a session of its own; past `TIMEOUT_S` kill it with the training processes
    it started."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(cmd[:6])}... ran past {TIMEOUT_S} s: {err[-3000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _shards(n: int, batch_size: int, world: int, seed: int) -> list[list[np.ndarray]]:
    out = []
    for rank in range(world):
        with sharded_batches(BatchShard(rank, world, np.random.default_rng(seed))):
            out.append(list(batch_indices(n, batch_size, np.random.default_rng(rank + 100))))
    return out


def test_sharded_batches_split_every_batch_of_one_process():
    # 3 processes: each step's parts together are one process's batch (same seed), whatever
    # generator the batch factory passes in
    single = list(batch_indices(51, 8, np.random.default_rng(5)))  # the last batch has 3 rows
    parts = _shards(51, 8, 3, seed=5)
    assert [len(p) for p in parts] == [len(single)] * 3
    for step, batch in enumerate(single):
        np.testing.assert_array_equal(np.concatenate([p[step] for p in parts]), batch)
        assert max(len(p[step]) for p in parts) - min(len(p[step]) for p in parts) <= 1


def test_a_batch_smaller_than_the_processes_is_skipped_by_all():
    parts = _shards(9, 4, 2, seed=0)  # batches 4, 4, 1: the last cannot be split in two
    assert [len(p) for p in parts] == [2, 2]
    assert sorted(np.concatenate(parts[0] + parts[1]).tolist()) != list(range(9))
    with sharded_batches(BatchShard(0, 2, np.random.default_rng(0))) as shard:
        unshuffled = list(batch_indices(6, 3))  # no generator: the order stays 0..n-1
    assert [b.tolist() for b in unshuffled] == [[0], [3]] and shard.calls == 1


def test_two_gloo_processes_under_torchrun(tmp_path):
    """One weight init, one partition of every batch, rank 0's early stopping, every torch model."""
    done = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                 str(WORKER), str(tmp_path)], env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert (r0["world_size"], r0["rank"], r1["rank"]) == (2, 0, 1)

    stop0, stop1 = r0["early_stopping"], r1["early_stopping"]
    # rank 0's figures: best at epoch 2, stopped after 2 epochs without gain; rank 1 never
    # validated, and its wish to stop after epoch 1 was overruled
    assert stop0["epochs"] == stop1["epochs"] == 4 and stop0["best_epoch"] == stop1["best_epoch"] == 2
    assert stop0["metrics"] == stop1["metrics"] == [0.1, 0.5, 0.4, 0.3]
    assert stop0["losses"] == stop1["losses"]  # the mean over both processes' batches
    assert stop0["weights"] == stop1["weights"]  # rank 1 started from other weights: DDP copied rank 0's
    # 4 steps an epoch as in one process, each rank on half of every batch, the two halves a
    # partition of the data each epoch
    assert len(stop0["rows"]) == len(stop1["rows"]) == 16
    for epoch in range(4):
        steps = range(4 * epoch, 4 * epoch + 4)
        assert all(len(stop0["rows"][s]) == len(stop1["rows"][s]) == 16 for s in steps)
        assert sorted(i for s in steps for i in stop0["rows"][s] + stop1["rows"][s]) == list(range(128))

    assert r0["unused"] == r1["unused"]
    assert "batch_indices" in r0["not_sharded"] and "one process" in r0["not_sharded"]
    assert r0["models"] == r1["models"]
    assert {"mf", "ncf", "multvae", "autorec", "sasrec"} <= set(r0["models"])
    assert all(sums[-1] == 2 for sums in r0["models"].values())  # fit_processes_


@pytest.fixture(scope="module")
def synthetic_split(tmp_path_factory):
    data = make_synthetic(800, 150, 24_000, seed=0, with_features=False)
    train, test = user_ratio_split(data, 0.2, seed=0)
    path = tmp_path_factory.mktemp("ddp") / "train.tsv"
    write_tsv(train, path)
    return path, test.to_frame()


def test_train_nproc_2_matches_one_process(synthetic_split, tmp_path):
    """`recforge train --nproc 2` (the elastic launcher, 2 gloo processes): same quality as one
    process, and only rank 0 logs and saves."""
    path, test = synthetic_split
    out = tmp_path / "mf2"
    sets = [arg for key, value in MF_SETTINGS.items() if key != "threads" for arg in ("--set", f"{key}={value}")]
    done = _run([sys.executable, "-m", "recforge", "train", "--model", "mf", "--data", str(path), "--out", str(out),
                 "--nproc", "2", "--threads", "1", "--no-quiet", *sets])
    assert done.returncode == 0, done.stderr[-3000:]
    log = done.stderr.splitlines()
    assert sum("saved to" in line for line in log) == 1 and sum(line.startswith("data:") for line in log) == 1
    assert any("process group: 2 processes (gloo)" in line for line in log)
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json", "item_ids.json", "meta.json", "train.npz", "user_ids.json", "weights.npz"]

    two = load_model(out)
    assert two.fit_processes_ == 2 and len(two.history_.records) == MF_SETTINGS["epochs"]
    one = create_model("mf", MF_SETTINGS).fit(_load(path))
    popularity = create_model("popularity").fit(_load(path))
    ndcg = {name: evaluate_topn(model, test, ks=(10,)).metrics["ndcg@10"]
            for name, model in (("one", one), ("two", two), ("popularity", popularity))}
    assert abs(ndcg["two"] - ndcg["one"]) <= SAME_QUALITY, ndcg
    assert ndcg["two"] >= ndcg["popularity"] + 0.025, ndcg


def _load(path: Path):
    from recforge.data.datasets import load_dataset

    return load_dataset(str(path))


def test_nproc_with_a_model_without_gradient_steps_trains_in_one_process(tmp_path):
    data, _ = tiny_interactions()
    path = write_tsv(data, tmp_path / "train.tsv")
    result = CliRunner().invoke(app, ["train", "--model", "popularity", "--data", str(path),
                                      "--out", str(tmp_path / "pop"), "--nproc", "2"])
    assert result.exit_code == 0, result.output
    assert "popularity trains in one process, not 2: counting is one pass over the data" in result.output
    assert (tmp_path / "pop" / "meta.json").exists()


def test_nproc_under_torchrun_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    result = CliRunner().invoke(app, ["train", "--model", "mf", "--data", "x.tsv", "--out", str(tmp_path),
                                      "--nproc", "2"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith("error: --nproc starts the training processes itself")
