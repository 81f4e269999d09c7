"""Monitoring: the metrics behind the alerts, the alert rules (promtool) and the Grafana dashboard."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from recforge.serving.metrics import ServiceMetrics, created_timestamp
from recforge.serving.store import StoreError

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERTS_TEST = DEPLOY / "prometheus" / "alerts_test.yml"
DASHBOARD = DEPLOY / "grafana" / "recforge.json"
#: series Prometheus makes itself, not /metrics
SYNTHETIC = {"up"}
_NAME = re.compile(r"\b(recforge_[a-z0-9_]+|up)\b(?![(\w])")


def exported_series() -> set[str]:
    """Every sample name /metrics can export, labelled families included (before any sample)."""
    suffixes = {"counter": ("_total", "_created"), "gauge": ("",), "info": ("_info",),
                "histogram": ("_bucket", "_count", "_sum", "_created"), "summary": ("_count", "_sum", "_created")}
    names = set()
    for family in ServiceMetrics().registry.collect():
        names.update(family.name + s for s in suffixes[family.type])
    return names


def _metric_names(expr: str) -> set[str]:
    return set(_NAME.findall(re.sub(r'"[^"]*"', '""', expr)))  # not inside label values


def _alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def _dashboard_exprs() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [t["expr"] for p in panels for t in p.get("targets", [])]


# ---------------------------------------------------------------------- metrics
def test_the_metrics_the_alerts_need_are_exported_and_move(make_client, tiny_model_dir: Path):
    client = make_client(tiny_model_dir)
    client.get("/v1/users/u1/recommendations?k=2")          # known: no fallback
    client.get("/v1/users/stranger/recommendations?k=2")    # unknown, no events: popularity
    client.post("/v1/recommendations", json={"user_ids": ["u2", "nobody"], "k": 2})
    client.post("/v1/recommendations", json={"items": ["a"], "k": 2})  # a session
    svc = client.app.state.service

    def down(*_args: object, **_kwargs: object) -> None:
        raise StoreError("event store unavailable: connection refused")

    svc.store.add_events, ping = down, svc.store.ping
    assert client.post("/v1/events", json={"events": [{"user_id": "u1", "item_id": "a"}]}).status_code == 503
    svc.store.ping = down
    r = client.get("/readyz")
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    text = client.get("/metrics").text
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples[("recforge_recommendation_lists_total", ())] == 5
    assert samples[("recforge_recommendation_fallbacks_total", (("kind", "popularity"),))] == 2
    assert samples[("recforge_store_errors_total", (("operation", "/v1/events"),))] == 1
    assert samples[("recforge_store_errors_total", (("operation", "readyz"),))] == 1
    assert samples[("recforge_ready", ())] == 0
    svc.store.ping = ping
    assert client.get("/readyz").status_code == 200
    assert "recforge_ready 1.0" in client.get("/metrics").text
    meta = json.loads((tiny_model_dir / "meta.json").read_text())
    assert samples[("recforge_model_created_timestamp_seconds", ())] == created_timestamp(meta["created"])
    assert abs(samples[("recforge_model_loaded_timestamp_seconds", ())] - time.time()) < 3600
    assert {name for name, _ in samples} <= exported_series()


def test_created_timestamps_are_parsed_as_utc():
    assert created_timestamp("1970-01-02T00:00:00+00:00") == 86400
    assert created_timestamp("1970-01-02T00:00:00") == 86400
    assert created_timestamp("yesterday") is None and created_timestamp(None) is None


# ---------------------------------------------------------------------- alert rules
def test_every_alert_and_panel_reads_exported_metrics_only():
    exported = exported_series()
    rules = _alert_rules()
    assert {r["alert"] for r in rules} >= {"RecforgeHighErrorRate", "RecforgeHighLatency", "RecforgeHighFallbackRate",
                                          "RecforgeModelStale", "RecforgeNotReady", "RecforgeEventStoreErrors"}
    for where, exprs in (("alerts.yml", [r["expr"] for r in rules]), ("recforge.json", _dashboard_exprs())):
        for expr in exprs:
            names = _metric_names(expr)
            assert names, f"{where}: no metric in {expr!r}"
            assert names <= exported | SYNTHETIC, f"{where}: {sorted(names - exported - SYNTHETIC)} not exported"
    series = [s["series"] for t in yaml.safe_load(ALERTS_TEST.read_text())["tests"] for s in t["input_series"]]
    assert {s.split("{")[0] for s in series} <= exported | SYNTHETIC


def test_every_alert_has_a_severity_a_summary_and_a_unit_test():
    tested = {case["alertname"] for t in yaml.safe_load(ALERTS_TEST.read_text())["tests"]
              for case in t.get("alert_rule_test", [])}
    for rule in _alert_rules():
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
        assert rule["alert"] in tested, f"{rule['alert']} has no case in alerts_test.yml"


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool not installed (Debian: apt-get install prometheus; .ci/run installs it)")
def test_promtool_checks_and_unit_tests_the_rules():
    check = subprocess.run(["promtool", "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    unit = subprocess.run(["promtool", "test", "rules", ALERTS_TEST.name], cwd=ALERTS_TEST.parent,
                          capture_output=True, text=True, timeout=120)
    assert unit.returncode == 0, unit.stdout + unit.stderr
    assert "SUCCESS" in unit.stdout


# ---------------------------------------------------------------------- dashboard
def test_the_dashboard_is_well_formed():
    dash = json.loads(DASHBOARD.read_text())
    panels = dash["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    assert {v["name"] for v in dash["templating"]["list"]} == {"datasource", "job"}
    for panel in panels:
        box = panel["gridPos"]
        assert box["x"] >= 0 and box["x"] + box["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["targets"] and panel["datasource"]["uid"] == "${datasource}", panel["title"]
            for target in panel["targets"]:
                assert 'job=~"$job"' in target["expr"], f"{panel['title']}: not filtered by the job variable"
    titles = " ".join(p["title"] for p in panels).lower()
    for topic in ("ready", "error", "latency", "fallback", "model age", "event-store"):
        assert topic in titles, topic
