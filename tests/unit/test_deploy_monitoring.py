"""deploy/'s monitoring examples hold together: the Grafana dashboard is valid JSON whose every query names only
metrics the daemons serve (as docs/operations.md lists them), and the Prometheus config is valid YAML scraping
each daemon's default HTTP port over TLS."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
NAME = re.compile(r"\b(aiomesos_(master|agent|jobs)_[a-z_]+)")
SUFFIXES = ("_bucket", "_count", "_sum")


def documented() -> set[str]:
    """Every metric docs/operations.md lists, in full (aiomesos_<daemon>_<name>)."""
    text = (ROOT / "docs" / "operations.md").read_text()
    names: set[str] = set()
    for daemon, section in re.findall(r"### \w[\w ]* \(`aiomesos_(\w+?)_`\)\n(.*?)(?=\n### |\n## )", text, re.S):
        for line in section.splitlines():
            first_cell = line.split("|")[1] if line.startswith("|") else ""
            names.update(f"aiomesos_{daemon}_{n}" for n in re.findall(r"`([a-z_]+)`", first_cell))
    return names


def test_the_dashboard_queries_only_documented_metrics() -> None:
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "aiomesos.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert exprs, "a dashboard without queries"
    listed = documented()
    assert {"aiomesos_master_tasks", "aiomesos_agent_task_cpu_seconds_total", "aiomesos_jobs_runs"} <= listed
    used = {m.group(1) for e in exprs for m in NAME.finditer(e)}
    unknown = {
        n for n in used if n not in listed and not any(n.endswith(s) and n[: -len(s)] in listed for s in SUFFIXES)
    }
    assert unknown == set(), f"the dashboard queries metrics no daemon serves: {sorted(unknown)}"


def test_the_scrape_config_reaches_every_daemon_over_tls() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert set(jobs) == {"aiomesos-master", "aiomesos-agent", "aiomesos-jobs"}
    for job in jobs.values():
        assert job["scheme"] == "https" and job["tls_config"]["ca_file"]
    ports = {name: {t.rsplit(":", 1)[1] for c in j["static_configs"] for t in c["targets"]} for name, j in jobs.items()}
    assert ports == {"aiomesos-master": {"5054"}, "aiomesos-agent": {"5055"}, "aiomesos-jobs": {"5064"}}
