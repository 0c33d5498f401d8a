"""InfluxQL targets and annotations for the grafana-foundation-sdk.

The SDK ships query builders for Prometheus, Loki and others, but none for Grafana's
InfluxDB datasource; these classes fill that gap in the SDK's own shape (a model with
`to_json`, a builder with chained setters and `build()`), so a panel takes them through its
ordinary `with_target`.  Every query is raw InfluxQL (`rawQuery`): the dashboards need
subqueries and `SHOW TAG VALUES` filters the visual editor cannot express.

An annotation carries its query twice: under `target` in the shape Grafana's InfluxDB
datasource migrates classic annotations into (`fromAnnotations`, `query`, `textColumn`,
`tagsColumn` ...; its `prepareAnnotation` in migrations.ts keeps a target that has a query
as it is), and at the top level in the classic form older Grafana versions read.
"""

from __future__ import annotations

import typing

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard

__all__ = ["DATASOURCE", "Annotation", "AnnotationQuery", "Query", "Target"]

DATASOURCE = dashboard.DataSourceRef(type_val="influxdb", uid="${datasource}")
"""Every panel's datasource: the one chosen in the `datasource` variable, by uid."""

ResultFormat = typing.Literal["time_series", "table"]


class Target(cogvariants.Dataquery):
    """One raw InfluxQL query of a panel."""

    def __init__(self) -> None:
        self.ref_id = "A"
        self.query = ""
        self.alias: str | None = None
        self.result_format: ResultFormat = "time_series"
        self.hide: bool | None = None
        self.datasource = DATASOURCE

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "datasource": self.datasource,
            "query": self.query,
            "rawQuery": True,
            "refId": self.ref_id,
            "resultFormat": self.result_format,
        }
        if self.alias is not None:
            payload["alias"] = self.alias
        if self.hide is not None:
            payload["hide"] = self.hide
        return payload


class Query(cogbuilder.Builder[Target]):
    """Builder of a `Target`: `Query(sql).ref_id("B").alias("$tag_channel")`."""

    def __init__(self, query: str) -> None:
        self._internal = Target()
        self._internal.query = query

    def build(self) -> Target:
        return self._internal

    def ref_id(self, ref_id: str) -> typing.Self:
        self._internal.ref_id = ref_id
        return self

    def alias(self, alias: str) -> typing.Self:
        """Series name; `$tag_channel` and `$col` are expanded by the datasource."""
        self._internal.alias = alias
        return self

    def datasource_uid(self, uid: str) -> typing.Self:
        """A fixed datasource instead of the dashboard's `datasource` variable (alert rules)."""
        self._internal.datasource = dashboard.DataSourceRef(type_val="influxdb", uid=uid)
        return self

    def table(self) -> typing.Self:
        """Rows with tags as columns, instead of one series per tag set."""
        self._internal.result_format = "table"
        return self


class AnnotationQuery(dashboard.AnnotationQuery):
    """An annotation whose events are the rows of an InfluxQL query."""

    def __init__(self) -> None:
        super().__init__(datasource=DATASOURCE, enable=True)
        self.query = ""
        self.text_column = ""
        self.tags_column = ""
        self.title_column = ""

    def to_json(self) -> dict[str, object]:
        payload = super().to_json()
        columns = {
            "tagsColumn": self.tags_column,
            "textColumn": self.text_column,
            "timeEndColumn": "",
            "titleColumn": self.title_column,
        }
        payload.update(columns, query=self.query)
        payload["target"] = {
            "fromAnnotations": True,
            "query": self.query,
            "queryType": "tags",
            "rawQuery": True,
            "refId": "Anno",
            **columns,
        }
        return payload


class Annotation(cogbuilder.Builder[dashboard.AnnotationQuery]):
    """Builder of an `AnnotationQuery`."""

    def __init__(self, name: str, query: str) -> None:
        self._internal = AnnotationQuery()
        self._internal.name = name
        self._internal.query = query

    def build(self) -> AnnotationQuery:
        return self._internal

    def icon_color(self, color: str) -> typing.Self:
        self._internal.icon_color = color
        return self

    def columns(self, *, text: str, tags: str = "", title: str = "") -> typing.Self:
        """Which result columns become the event's text, tags (comma-separated) and title."""
        self._internal.text_column = text
        self._internal.tags_column = tags
        self._internal.title_column = title
        return self
