"""Alert rules as code (issue 15 section 6): Grafana-managed rules in its file-provisioning
format, written by `remotecal dashboards build` as OUT/provisioning/alerting/remotecal.yaml.

Each rule is one InfluxQL query (refId A, on the provisioned datasource), reduced to one
number per series (B: the last value) and compared with a threshold (C, the condition).
A series is one site/gateway (one run, one channel), so each alert names what it is about
in its labels.  The queries are proven on a real influxd by tests/dashboards/test_alerts.py.

- Step not stable within its time: the run engine ended a step `not_stable` (its `max_s`
  passed before every reference met the step's criteria) in the last 10 minutes.
- Gateway offline: no `gateway_health` point for 3 minutes from a gateway that sent some in
  the last 24 hours (a gateway writes one every `health_interval`, 10 s by default).
- Journal growing: a gateway's backlog (`journal_pending`) grew by more than
  JOURNAL_GROWTH readings in 15 minutes - a sink that does not deliver.
- Readings stale: a channel that had readings in the last hour has had none for 5 minutes.

"Offline" and "stale" are the minutes since a series' latest point (dashboards.queries.
silent_minutes): a silent series gives a growing number, not no series at all (a series that
vanishes would resolve its alert instead of firing it).
"""

from __future__ import annotations

import json
from typing import Any

from grafana_foundation_sdk.builders import alerting, expr
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import alerting as alerting_model

from dashboards.influxql import Query
from dashboards.queries import HEALTH, READING, RUN_EVENT, TIME_FILTER, silent_minutes
from dashboards.variables import DATASOURCE_UID

__all__ = ["FOLDER", "GROUP", "JOURNAL", "JOURNAL_GROWTH", "NOT_STABLE", "OFFLINE", "OFFLINE_MIN", "RULES",
           "STALE", "STALE_MIN", "alert_rules", "alerting_yaml"]

FOLDER = "remotecal"
GROUP = "remotecal"
INTERVAL = "1m"

JOURNAL_GROWTH = 1000
"""Readings the backlog may grow by in 15 minutes before it alerts (a 1 Hz gateway of 1-2
channels; a busy one may want more)."""

NOT_STABLE = (
    f'SELECT count("outcome") AS "not_stable" FROM {RUN_EVENT} '
    f"WHERE \"outcome\" = 'not_stable' AND {TIME_FILTER} GROUP BY \"site\", \"gateway\", \"run\""
)

OFFLINE = silent_minutes(HEALTH, "journal_pending", f"WHERE {TIME_FILTER}", ("site", "gateway"))
OFFLINE_MIN = 3
"""Minutes without a health point (10 s apart by default) that make a gateway offline."""

JOURNAL = (
    'SELECT last("journal_pending") - first("journal_pending") AS "growth" '
    f'FROM {HEALTH} WHERE {TIME_FILTER} GROUP BY "site", "gateway"'
)

STALE = silent_minutes(READING, "value", f"WHERE {TIME_FILTER}", ("site", "gateway", "run", "channel"))
STALE_MIN = 5
"""Minutes without a reading that make a channel stale."""

# (uid, title, query, seconds of data it reads, threshold (kind, value), for, summary, severity)
RULES: tuple[tuple[str, str, str, int, tuple[str, float], str, str, str], ...] = (
    ("remotecal-step-not-stable", "Step not stable within its time", NOT_STABLE, 600, ("gt", 0), "0s",
     "Run {{ $labels.run }} on {{ $labels.site }}/{{ $labels.gateway }}: a step ended not_stable "
     "(its max_s passed before the references met the step's criteria)", "warning"),
    ("remotecal-gateway-offline", "Gateway offline", OFFLINE, 86400, ("gte", OFFLINE_MIN), "0s",
     "Gateway {{ $labels.site }}/{{ $labels.gateway }} sent no health point for 3 minutes", "critical"),
    ("remotecal-journal-growing", "Journal growing", JOURNAL, 900, ("gt", JOURNAL_GROWTH), "5m",
     f"Gateway {{{{ $labels.site }}}}/{{{{ $labels.gateway }}}}: its journal backlog grew by more than "
     f"{JOURNAL_GROWTH} readings in 15 minutes (a sink is not delivering)", "warning"),
    ("remotecal-readings-stale", "Readings stale", STALE, 3600, ("gte", STALE_MIN), "0s",
     "Channel {{ $labels.channel }} of {{ $labels.site }}/{{ $labels.gateway }} (run {{ $labels.run }}): "
     "no reading for 5 minutes", "warning"),
)


def _rule(uid: str, title: str, query: str, seconds: int, threshold: tuple[str, float], for_: str,
          summary: str, severity: str) -> alerting.Rule:
    kind, value = threshold
    source = (
        alerting.Query("A")
        .datasource_uid(DATASOURCE_UID)
        .relative_time_range(alerting_model.RelativeTimeRange(from_val=seconds, to=0))
        .model(Query(query).ref_id("A").datasource_uid(DATASOURCE_UID))
    )
    reduce = alerting.Query("B").datasource_uid("__expr__").model(
        expr.TypeReduce().ref_id("B").expression("A").reducer("last"))
    condition = alerting.Query("C").datasource_uid("__expr__").model(
        expr.TypeThreshold().ref_id("C").expression("B").conditions([
            expr.ExprTypeThresholdConditions().evaluator(
                expr.ExprTypeThresholdConditionsEvaluator().type(kind).params([float(value)]))  # type: ignore[arg-type]
        ]))
    return (
        alerting.Rule(title)
        .uid(uid)
        .condition("C")
        .with_query(source)
        .with_query(reduce)
        .with_query(condition)
        .no_data_state("OK")
        .exec_err_state("Error")
        .for_val(for_)
        .labels({"severity": severity, "service": "remotecal"})
        .annotations({"summary": summary})
    )


def alert_rules() -> list[dict[str, Any]]:
    """Each rule as Grafana's file provisioning reads it."""
    keep = ("uid", "title", "condition", "data", "noDataState", "execErrState", "for", "labels",
            "annotations")
    rules = []
    for spec in RULES:
        model: dict[str, Any] = json.loads(json.dumps(_rule(*spec).build(), cls=JSONEncoder))
        rules.append({k: model[k] for k in keep if k in model})
    return rules


def alerting_yaml() -> str:
    """OUT/provisioning/alerting/remotecal.yaml (JSON is YAML: no YAML writer needed).

    Grafana expands `$NAME` in provisioning files from its environment, so every `$` of the
    queries (`$timeFilter`) and the summaries (`$labels`) is written `$$`, which it reads as `$`."""
    document = {
        "apiVersion": 1,
        "groups": [{"orgId": 1, "name": GROUP, "folder": FOLDER, "interval": INTERVAL,
                    "rules": alert_rules()}],
    }
    text = json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False).replace("$", "$$")
    return ("# Written by `remotecal dashboards build` (dashboards/alerts.py); do not edit.\n"
            "# Grafana alert rules (file provisioning); a doubled dollar sign is one.\n"
            + text + "\n")
