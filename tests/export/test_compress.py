"""Compressed artifacts: codecs round-trip, quantized/pruned models load and rank, meta.json says what was done."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from typer.testing import CliRunner

from recforge.cli.main import app
from recforge.errors import ConfigError
from recforge.export.compress import artifact_bytes, compress_arrays, compress_artifact
from recforge.models import artifact
from recforge.models.base import Recommender
from recforge.testing import fit_case

runner = CliRunner()


def test_codecs_round_trip():
    rng = np.random.default_rng(0)
    table = rng.normal(size=(50, 16)).astype(np.float32)
    table[::5] = 0.0  # a fifth of the rows zero: stored whole (dropping under a quarter saves little)
    pruned = table.copy()
    pruned[:40] = 0.0  # 80 % of the rows pruned: only the others are stored
    csr = sp.random(30, 400, density=0.2, random_state=0, format="csr")
    arrays = {"table": table, "pruned": pruned, "bias": rng.normal(size=100), "seq": np.arange(300, dtype=np.int64),
              "indptr": csr.indptr.astype(np.int64), "indices": csr.indices.astype(np.int32),
              "small": np.ones(3, np.float32), "history.loss": np.ones(100)}
    for quantize, tol in (("none", 0.0), ("fp16", 2e-3), ("int8", 1.5e-2)):
        stored, codecs = compress_arrays(arrays, quantize, gaps=("indices",))
        back = artifact.decode_arrays(stored, codecs)
        assert set(back) == set(arrays)
        for key, value in arrays.items():
            assert back[key].dtype == value.dtype and back[key].shape == value.shape, key
            if np.issubdtype(value.dtype, np.integer):
                np.testing.assert_array_equal(back[key], value)
            else:  # int8: within half a step of each row's scale
                np.testing.assert_allclose(back[key], value, atol=tol * max(1.0, float(np.abs(value).max())))
        assert (back["pruned"][:40] == 0).all() and codecs["pruned"].get("rows")
        assert "table" not in codecs or not codecs["table"].get("rows")
        assert stored["seq"].dtype == np.uint16 and stored["indices"].itemsize <= 2  # gaps are small
    assert stored["table"].dtype == np.int8 and stored["bias"].dtype == np.float16


@pytest.fixture(scope="module")
def ncf_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Recommender, Path]:
    model = fit_case("ncf").model
    return model, model.save(tmp_path_factory.mktemp("ncf") / "plain")


@pytest.mark.parametrize("quantize", ["fp16", "int8"])
def test_quantized_ncf_loads_ranks_and_records_what_was_done(ncf_dir, quantize: str, tmp_path: Path):
    from torch.ao.nn.quantized import dynamic as qd

    model, src = ncf_dir
    record = compress_artifact(src, tmp_path / "c", quantize)
    meta = artifact.open_artifact(tmp_path / "c")  # every checksum matches
    assert meta["format_version"] == 2 and meta["compression"]["quantize"] == quantize
    assert meta["compression"]["arrays"] == json.loads(json.dumps(record["arrays"]))
    loaded = Recommender.load(tmp_path / "c")
    users = np.arange(model.n_users)
    expected, got = model.score(users), loaded.score(users)
    assert np.abs(got - expected).max() < (0.01 if quantize == "fp16" else 0.1) * np.abs(expected).max()
    # the same top item for most users (tiny model: a margin that holds for any seed)
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.9
    tower = loaded.network_.tower  # type: ignore[attr-defined]
    assert isinstance(tower[2], qd.Linear) == (quantize == "int8")
    recs = loaded.recommend(loaded.user_map_.ids.tolist(), k=3)
    assert len(recs) == 3 * model.n_users
    # saving a loaded compressed model writes a plain float artifact of the same weights (int8
    # layers compute with activations quantized per call: only close to their float version)
    plain = loaded.save(tmp_path / "again")
    assert "compression" not in artifact.open_artifact(plain)
    np.testing.assert_allclose(Recommender.load(plain).score(users), got, atol=1e-5 if quantize == "fp16" else 0.05)


def test_pruning_zeroes_mlp_weights_and_rare_rows(ncf_dir, tmp_path: Path):
    model, src = ncf_dir
    record = compress_artifact(src, tmp_path / "p", "none", prune=0.8, prune_rows=0.5)
    assert record["pruned_layers"]["sparsity"] == pytest.approx(0.8, abs=0.01)
    loaded = Recommender.load(tmp_path / "p")
    net = loaded.network_  # type: ignore[attr-defined]
    linears = [m.weight for m in net.modules() if isinstance(m, torch.nn.Linear)]
    zeros = sum(int((w == 0).sum()) for w in linears) / sum(w.numel() for w in linears)
    assert zeros == pytest.approx(0.8, abs=0.01)  # ranked across layers: each keeps its share
    rare = np.argsort(model.item_popularity_, kind="stable")[:model.n_items // 2]
    assert record["pruned_rows"]["items"] == len(rare)
    kept = np.setdiff1d(np.arange(model.n_items), rare)
    for table in (net.gmf_item, net.mlp_item):
        assert (table.weight[rare] == 0).all() and (table.weight[kept] != 0).any(dim=1).all()
    assert (net.gmf_user.weight != 0).any(dim=1).all()  # users keep their rows
    recs = loaded.recommend(loaded.user_map_.ids[:4].tolist(), k=5)
    assert len(recs) == 20


def test_sizes_shrink_and_bad_requests_are_one_line_errors(tmp_path: Path):
    model = fit_case("sasrec").model
    src = model.save(tmp_path / "plain")
    compress_artifact(src, tmp_path / "int8", "int8")
    assert artifact_bytes(tmp_path / "int8") < 0.7 * artifact_bytes(src)
    np.testing.assert_allclose(Recommender.load(tmp_path / "int8").score(np.arange(4)), model.score(np.arange(4)),
                               atol=0.05 * float(np.abs(model.score(np.arange(4))).max()))
    with pytest.raises(ConfigError, match="already compressed"):
        compress_artifact(tmp_path / "int8", tmp_path / "again", "fp16")
    mf = fit_case("mf").model.save(tmp_path / "mf")
    with pytest.raises(ConfigError, match="no linear"):
        compress_artifact(mf, tmp_path / "mf-pruned", prune=0.5)
    with pytest.raises(ConfigError, match="fraction"):
        compress_artifact(mf, tmp_path / "mf-pruned", prune_rows=1.5)


def test_cli_compress_and_export(ncf_dir, tmp_path: Path):
    pytest.importorskip("onnxruntime")
    _, src = ncf_dir
    out = tmp_path / "small"
    result = runner.invoke(app, ["compress", "--model", str(src), "--quantize", "int8", "--prune", "0.5",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "smaller" in result.output and "50% of the weights" in result.output
    again = runner.invoke(app, ["compress", "--model", str(src), "--quantize", "int4", "--out", str(out)])
    assert again.exit_code == 1 and "--quantize must be" in again.output
    # a compressed model exports too (its int8 layers as float layers of the same weights)
    onnx_file = tmp_path / "model.onnx"
    result = runner.invoke(app, ["export", "--model", str(out), "--format", "onnx", "--out", str(onnx_file)])
    assert result.exit_code == 0, result.output
    assert onnx_file.stat().st_size > 0 and "users → scores" in result.output


@pytest.mark.parametrize("name", ["ease", "ials"])
def test_factor_models_without_torch_get_int8_tables(name: str, tmp_path: Path):
    model = fit_case(name).model
    src = model.save(tmp_path / "plain")
    record = compress_artifact(src, tmp_path / "int8", "int8")
    assert any(c["codec"] == "int8_rows" for c in record["arrays"]["weights.npz"].values())
    loaded = Recommender.load(tmp_path / "int8")
    users = np.arange(model.n_users)
    expected = model.score(users)
    assert np.abs(loaded.score(users) - expected).max() < 0.02 * np.abs(expected).max()
    assert (loaded.recommend_idx(users, 3)[0][:, 0] == model.recommend_idx(users, 3)[0][:, 0]).mean() >= 0.9
