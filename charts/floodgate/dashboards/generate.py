#!/usr/bin/env python3
"""Writes floodgate.json, the Grafana dashboard for floodgate, beside this file.

Run `python3 charts/floodgate/dashboards/generate.py` after changing a panel; the test command
checks that the committed JSON is what this script makes (tests/dashboard/test_dashboard_json.py)
and evaluates every panel's query against a real Prometheus scraping floodgated
(tests/dashboard/test_dashboard_prometheus.py).

Variables: $datasource (a Prometheus data source), $job, $instance, $batch (batch ids of the
active batches; All by default). Rates use $__rate_interval.
"""
import json
import pathlib

UID = "floodgate"
SEL = 'job=~"$job", instance=~"$instance"'
RI = "$__rate_interval"
DS = {"type": "prometheus", "uid": "${datasource}"}


class Layout:
    """Places panels left to right, 24 columns wide, rows of one height."""

    def __init__(self):
        self.y = 0
        self.x = 0
        self.next_id = 1
        self.panels = []

    def row(self, title):
        if self.x:
            self.y += 8
            self.x = 0
        self.panels.append({"type": "row", "title": title, "id": self._id(), "collapsed": False,
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}, "panels": []})
        self.y += 1

    def panel(self, title, targets, *, unit="short", w=8, kind="timeseries", description="",
              min_=None, max_=None, stack=False, extra=None):
        if self.x + w > 24:
            self.y += 8
            self.x = 0
        defaults = {"unit": unit}
        if min_ is not None:
            defaults["min"] = min_
        if max_ is not None:
            defaults["max"] = max_
        if kind == "timeseries":
            defaults["custom"] = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10,
                                  "showPoints": "never",
                                  "stacking": {"mode": "normal" if stack else "none"}}
        p = {
            "id": self._id(), "type": kind, "title": title, "description": description,
            "datasource": DS, "gridPos": {"h": 8, "w": w, "x": self.x, "y": self.y},
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom"},
                        "tooltip": {"mode": "multi"}},
            "targets": [{"refId": chr(ord("A") + i), "datasource": DS, "expr": e,
                         "legendFormat": lf} for i, (e, lf) in enumerate(targets)],
        }
        if extra:
            p.update(extra)
        self.panels.append(p)
        self.x += w

    def _id(self):
        i = self.next_id
        self.next_id += 1
        return i


def quantiles(metric, by, qs=(0.5, 0.9, 0.99)):
    return [(f'histogram_quantile({q}, sum by (le, {by}) (rate({metric}_bucket{{{SEL}}}[{RI}])))',
             f"p{int(q * 100)} {{{{{by}}}}}") for q in qs]


def build():
    L = Layout()
    L.row("floodgate API (rate, errors, duration)")
    L.panel("API requests by route",
            [(f"sum by (route) (rate(floodgate_api_requests_total{{{SEL}}}[{RI}]))", "{{route}}")],
            unit="reqps", description="Requests answered by floodgate's REST API.")
    L.panel("API error ratio by status class",
            [(f'sum by (class) (label_replace(rate(floodgate_api_requests_total{{{SEL}, code=~"[45].."}}[{RI}]), '
              f'"class", "${{1}}xx", "code", "(.)..")) / scalar(sum(rate(floodgate_api_requests_total{{{SEL}}}[{RI}])))',
              "{{class}}")],
            unit="percentunit", min_=0, description="Share of API answers that were 4xx or 5xx.")
    L.panel("API latency by route", quantiles("floodgate_api_request_duration_seconds", "route"),
            unit="s")

    L.row("Calls to Prefect (rate, errors, duration)")
    L.panel("Prefect requests by endpoint",
            [(f"sum by (endpoint) (rate(floodgate_prefect_requests_total{{{SEL}}}[{RI}]))",
              "{{endpoint}}")], unit="reqps")
    L.panel("Prefect error ratio by status class",
            [(f'sum by (status_class) (rate(floodgate_prefect_requests_total{{{SEL}, status_class!="2xx"}}[{RI}])) '
              f"/ scalar(sum(rate(floodgate_prefect_requests_total{{{SEL}}}[{RI}])))", "{{status_class}}")],
            unit="percentunit", min_=0,
            description="4xx, 5xx and transport errors (\"error\") as a share of all requests.")
    L.panel("Prefect latency by endpoint",
            quantiles("floodgate_prefect_request_duration_seconds", "endpoint", (0.5, 0.99)), unit="s")
    L.panel("Retries by reason",
            [(f"sum by (reason) (rate(floodgate_retries_total{{{SEL}}}[{RI}]))", "{{reason}}")],
            unit="reqps", w=12)
    L.panel("Launches by outcome",
            [(f"sum by (outcome) (rate(floodgate_launches_total{{{SEL}}}[{RI}]))", "{{outcome}}")],
            unit="ops", w=12, stack=True,
            description="created: a new child run; existing: Prefect already had it (idempotent "
                        "retry); failed: LAUNCH_FAILED.")

    L.row("Limiter saturation")
    L.panel("In flight vs limit",
            [(f"sum(floodgate_prefect_requests_in_flight{{{SEL}}})", "in flight"),
             (f"sum(floodgate_prefect_in_flight_limit{{{SEL}}})", "limit (adaptive)")],
            description="Requests to Prefect awaiting an answer against the adaptive cap.")
    L.panel("Token bucket",
            [(f"sum(floodgate_token_bucket_tokens{{{SEL}}})", "tokens")],
            description="Requests that may start now under --rate (0: rate-limited).")
    L.panel("Global pause (Retry-After)",
            [(f"max(floodgate_prefect_backoff_remaining_seconds{{{SEL}}})", "seconds left")],
            unit="s", min_=0)
    L.panel("Circuit breaker",
            [(f"max by (state) (floodgate_circuit_breaker_state{{{SEL}}})", "{{state}}")],
            min_=0, max_=1, kind="state-timeline",
            extra={"options": {"showValue": "never", "mergeValues": True}})
    L.panel("Retry budget",
            [(f"sum(floodgate_retry_budget_tokens{{{SEL}}})", "tokens"),
             (f"sum(rate(floodgate_retries_deferred_total{{{SEL}}}[{RI}]))", "retries deferred /s")])
    L.panel("Ready queue and oldest pending",
            [(f"sum(floodgate_items_ready{{{SEL}}})", "ready items"),
             (f"max(floodgate_oldest_pending_age_seconds{{{SEL}}})", "oldest pending age (s)")])

    L.row("Children and items")
    L.panel("Children by Prefect state",
            [(f"sum by (state) (floodgate_children{{{SEL}}})", "{{state}}")], w=12, stack=True,
            description="Launched children not yet final, by the Prefect state last seen.")
    L.panel("Items by state",
            [(f"sum by (state) (floodgate_items{{{SEL}}})", "{{state}}")], w=12, stack=True)

    L.row("Active batches ($batch)")
    B = f'{SEL}, batch_id=~"$batch"'
    L.panel("Progress", [(f"max by (batch_id) (floodgate_batch_progress_ratio{{{B}}})", "{{batch_id}}")],
            unit="percentunit", min_=0, max_=1, kind="bargauge",
            extra={"options": {"orientation": "horizontal", "displayMode": "gradient",
                               "reduceOptions": {"calcs": ["lastNotNull"], "values": False}}})
    L.panel("Launch rate", [(f"max by (batch_id) (floodgate_batch_launch_rate{{{B}}})", "{{batch_id}}")],
            unit="ops")
    L.panel("ETA", [(f"max by (batch_id) (floodgate_batch_eta_seconds{{{B}}})", "{{batch_id}}")],
            unit="s", min_=0, description="At the last minute's completion rate; absent while "
                                           "nothing completes.")
    L.panel("Remaining items",
            [(f"max by (batch_id) (floodgate_batch_remaining_items{{{B}}})", "{{batch_id}}")])
    L.panel("Children running",
            [(f"max by (batch_id) (floodgate_batch_children_running{{{B}}})", "{{batch_id}}")])
    L.panel("Batches finished",
            [(f"sum by (state) (increase(floodgate_batches_finished_total{{{SEL}}}[{RI}]))", "{{state}}")],
            description="Batches that reached a final state.")

    def var(name, query, *, include_all=True, multi=True, label=None):
        return {"name": name, "label": label or name, "type": "query", "datasource": DS,
                "query": {"query": query, "refId": name}, "definition": query,
                "refresh": 2, "includeAll": include_all, "multi": multi, "allValue": ".*",
                "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
                "sort": 1}

    return {
        "uid": UID,
        "title": "floodgate",
        "description": "floodgate: its API, its calls to Prefect, the limiter, children and "
                       "batches. Generated by charts/floodgate/dashboards/generate.py.",
        "tags": ["floodgate", "prefect"],
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "timezone": "",
        "graphTooltip": 1,
        "annotations": {"list": []},
        "links": [],
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource",
             "query": "prometheus", "current": {}, "hide": 0, "refresh": 1, "regex": ""},
            var("job", "label_values(floodgate_build_info, job)"),
            var("instance", 'label_values(floodgate_build_info{job=~"$job"}, instance)'),
            var("batch", 'label_values(floodgate_batch_progress_ratio{job=~"$job", instance=~"$instance"}, batch_id)',
                label="batch"),
        ]},
        "panels": L.panels,
    }


def main():
    out = pathlib.Path(__file__).with_name("floodgate.json")
    out.write_text(json.dumps(build(), indent=2) + "\n")


if __name__ == "__main__":
    main()
