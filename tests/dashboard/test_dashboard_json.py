"""The committed dashboard is what its generator makes, and has what Grafana needs."""
import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DIR = REPO / "charts" / "floodgate" / "dashboards"


def test_committed_json_is_the_generators_output(tmp_path):
    committed = (DIR / "floodgate.json").read_text()
    subprocess.run([sys.executable, str(DIR / "generate.py")], check=True)
    assert (DIR / "floodgate.json").read_text() == committed, "run generate.py and commit"


def test_dashboard_shape():
    d = json.loads((DIR / "floodgate.json").read_text())
    assert d["uid"] == "floodgate"
    names = {v["name"]: v for v in d["templating"]["list"]}
    assert names["datasource"]["type"] == "datasource" and names["datasource"]["query"] == "prometheus"
    assert {"job", "instance", "batch"} <= set(names)
    panels = [p for p in d["panels"] if p["type"] != "row"]
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    for p in panels:
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            e = t["expr"]
            assert 'job=~"$job"' in e and 'instance=~"$instance"' in e, (p["title"], e)
            # Rates and increases use Grafana's $__rate_interval, never a fixed window.
            windows = re.findall(r"\[([^\]]+)\]\)", e)  # range selectors: "[...])"
            assert all(w == "$__rate_interval" for w in windows), (p["title"], e)
            if re.search(r"\b(rate|increase)\(", e):
                assert windows, (p["title"], e)
    batch_panels = [p for p in panels if any('batch_id=~"$batch"' in t["expr"] for t in p["targets"])]
    assert {p["title"] for p in batch_panels} >= {"Progress", "Launch rate", "ETA"}
    # Every metric the dashboard reads is documented in docs/operations.md.
    ops = (REPO / "docs" / "operations.md").read_text()
    metrics = {m for p in panels for t in p["targets"]
               for m in re.findall(r"\b(floodgate_[a-z_]+?)(?:_bucket)?\{", t["expr"])}
    for m in metrics:
        assert f"`{m}`" in ops, f"{m} is not documented in docs/operations.md"
