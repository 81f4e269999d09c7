"""`recforge serve`, `keys create|list|revoke` and `retrain` (the Typer commands themselves)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from recforge.cli.serve import (
    keys_app,
    merge_training_and_events,
    retrain_command,
    serve_command,
)
from recforge.data.interactions import Interactions
from recforge.registry import create_model, load_model
from recforge.serving.auth import hash_key, read_keys_file
from recforge.serving.store import Event, EventStore, default_store_url

runner = CliRunner()


def _app() -> typer.Typer:
    """The commands as main.py registers them."""
    app = typer.Typer(pretty_exceptions_enable=False, add_completion=False)
    app.command("serve")(serve_command)
    app.command("retrain")(retrain_command)
    app.add_typer(keys_app, name="keys")
    return app


def run(*args: object):
    return runner.invoke(_app(), [str(a) for a in args])


def test_keys_create_prints_only_the_key_and_stores_its_hash(tmp_path: Path):
    keys_file = tmp_path / "keys.json"
    code = ("import typer; from recforge.cli.serve import keys_app; "
            "app = typer.Typer(); app.add_typer(keys_app, name='keys'); app()")
    proc = subprocess.run([sys.executable, "-c", code, "keys", "create", "--name", "web",
                           "--scope", "admin", "--keys-file", str(keys_file)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("rfk_") and len(lines[0]) > 40
    key = lines[0]
    text = keys_file.read_text()
    assert key not in text
    entries = read_keys_file(keys_file)
    assert [(e.name, e.scope, e.sha256) for e in entries] == [("web", "admin", hash_key(key))]
    assert keys_file.stat().st_mode & 0o077 == 0  # owner-only


def test_keys_errors_list_and_revoke(tmp_path: Path):
    keys_file = tmp_path / "keys.json"
    assert run("keys", "create", "--name", "a", "--keys-file", keys_file).exit_code == 0
    dup = run("keys", "create", "--name", "a", "--keys-file", keys_file)
    assert dup.exit_code == 1 and "already exists" in dup.output
    bad_scope = run("keys", "create", "--name", "b", "--scope", "root", "--keys-file", keys_file)
    assert bad_scope.exit_code == 1 and "invalid scope 'root'" in bad_scope.output
    listing = run("keys", "list", "--keys-file", keys_file)
    assert listing.exit_code == 0 and listing.output.startswith("a\tread\t")
    assert run("keys", "revoke", "--name", "a", "--keys-file", keys_file).exit_code == 0
    assert read_keys_file(keys_file) == []
    missing = run("keys", "revoke", "--name", "zz", "--keys-file", keys_file)
    assert missing.exit_code == 1 and "no key named 'zz'" in missing.output
    (tmp_path / "broken.json").write_text("{")
    broken = run("keys", "list", "--keys-file", tmp_path / "broken.json")
    assert broken.exit_code == 1 and "unreadable" in broken.output and "Traceback" not in broken.output


def test_serve_refuses_an_open_public_bind(tiny_model_dir: Path):
    result = run("serve", "--model", tiny_model_dir, "--host", "0.0.0.0")
    assert result.exit_code == 1
    assert "refusing to serve on 0.0.0.0 without --keys-file" in result.output


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "/no/such/model"], "model directory /no/such/model does not exist"),
    (["--store", "mysql://"], "no database driver"),
    (["--keys-file", "/no/such/keys.json"], "keys file /no/such/keys.json does not exist"),
])
def test_serve_startup_errors_are_one_line(tiny_model_dir: Path, args: list[str], message: str):
    full = ["serve", "--model", tiny_model_dir, *args] if args[0] != "--model" else ["serve", *args]
    result = run(*full)
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output


def test_retrain_merges_events_with_training_data(tmp_path: Path, tiny_model_dir: Path):
    import shutil

    model_dir = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    store = EventStore.open(default_store_url(model_dir))
    store.add_events([Event("u1", "c", 5.0), Event("new-user", "a", 4.0), Event("new-user", "new-item"),
                      Event("u2", "new-item", 2.0, idempotency_key="x")])
    store.close()
    out = tmp_path / "retrained"
    result = run("retrain", "--model", model_dir, "--out", out)
    assert result.exit_code == 0, result.output
    assert "2 new users" not in result.output and "1 new users, 1 new items" in result.output
    old, new = load_model(model_dir), load_model(out)
    assert new.name == old.name and new.config == old.config
    assert "new-user" in new.user_map_ and "new-item" in new.item_map_
    assert len(new.training_interactions()) == len(old.training_interactions()) + 4
    # the new user is no longer cold, and the new item counts as seen for them
    recs = new.recommend(["new-user"], k=20)
    assert not {"a", "new-item"} & set(recs["item_id"])
    assert new.item_features_.loc["a", "title"] == "Item a"

    again = run("retrain", "--model", model_dir, "--out", out)
    assert again.exit_code == 1 and "not empty" in again.output
    assert run("retrain", "--model", model_dir, "--out", out, "--force").exit_code == 0
    same = run("retrain", "--model", model_dir, "--out", model_dir)
    assert same.exit_code == 1 and "--out must differ from --model" in same.output


def test_merge_for_a_rating_model_skips_events_without_ratings(tiny_data):
    frame, items = tiny_data
    model = create_model("popularity", task="rating").fit(Interactions.from_frame(frame, item_features=items))
    events = pd.DataFrame({"user_id": ["u1", "u1", "u9"], "item_id": ["a", "h", "a"],
                           "rating": [1.0, None, 2.0]})
    data, stats = merge_training_and_events(model, events)
    assert stats == {"training": len(frame), "events": 2, "skipped": 1, "new_users": 1, "new_items": 0}
    rows = data.to_frame()
    assert rows[(rows.user_id == "u1") & (rows.item_id == "a")].rating.tolist() == [1.0]  # event wins
    assert len(rows) == len(frame) + 1


def test_worker_app_needs_its_settings(monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path,
                                       tmp_path: Path):
    from recforge.cli.serve import ENV_CONFIG, worker_app
    from recforge.errors import ConfigError

    monkeypatch.delenv(ENV_CONFIG, raising=False)
    with pytest.raises(ConfigError, match="recforge serve --workers"):
        worker_app()
    monkeypatch.setenv(ENV_CONFIG, json.dumps({"model_dir": str(tiny_model_dir),
                                               "store_url": f"sqlite:///{tmp_path / 'e.db'}"}))
    app = worker_app()
    assert app.state.service.holder.current.info["name"] == "popularity"
    app.state.service.store.close()
