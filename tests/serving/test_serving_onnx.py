"""`recforge serve --runtime onnx`: the service ranks with onnxruntime's scores, through the model."""

from __future__ import annotations

from pathlib import Path

import pytest

from recforge.errors import ArtifactError
from recforge.testing import fit_case

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def sasrec_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fit_case("sasrec").model.save(tmp_path_factory.mktemp("onnx") / "sasrec")


def test_onnx_runtime_serves_the_same_lists(make_client, sasrec_dir: Path, tmp_path: Path):
    torch_client = make_client(sasrec_dir)
    onnx_client = make_client(sasrec_dir, runtime="onnx")
    for user in ("u00", "u13"):
        expected = torch_client.get(f"/v1/users/{user}/recommendations", params={"k": 5}).json()
        got = onnx_client.get(f"/v1/users/{user}/recommendations", params={"k": 5}).json()
        assert got["model"]["runtime"] == "onnx" and expected["model"]["runtime"] == "torch"
        assert [i["item_id"] for i in got["items"]] == [i["item_id"] for i in expected["items"]]
        assert [i["score"] for i in got["items"]] == pytest.approx([i["score"] for i in expected["items"]], abs=1e-4)
    # events since training continue the user's sequence, scored by the graph as well
    assert onnx_client.post("/v1/events", json={"events": [{"user_id": "u00", "item_id": "i15"}]}).status_code < 300
    after = onnx_client.get("/v1/users/u00/recommendations", params={"k": 5}).json()
    assert "i15" not in [i["item_id"] for i in after["items"]]
    # a reload keeps the runtime
    r = onnx_client.post("/v1/admin/reload", json={"model_dir": str(sasrec_dir)})
    assert r.status_code == 200
    assert onnx_client.get("/v1/model").json()["runtime"] == "onnx"


def test_models_without_a_graph_are_refused(tiny_itemknn_dir: Path):
    from recforge.serving.state import LoadedModel

    with pytest.raises(ArtifactError, match="onnx runtime"):
        LoadedModel.load(tiny_itemknn_dir, runtime="onnx")
