#!/usr/bin/env python3
"""Writes deploy/grafana/posthaste.json, the posthaste Grafana dashboard.

The dashboard is generated so panels stay uniform; edit this file, run it, commit both.
Every metric it queries is checked against a live server by tests/metrics_test.py.
"""

import json
import os

RATE = "$__rate_interval"
SEL = 'instance=~"$instance"'
TSEL = 'instance=~"$instance",tenant=~"$tenant"'
SHSEL = 'instance=~"$instance",shard=~"$shard"'

_next_id = [1]


def panel(title, targets, unit="short", width=12, height=8, kind="timeseries", stack=False,
          description=""):
  pid = _next_id[0]
  _next_id[0] += 1
  p = {
      "id": pid,
      "type": kind,
      "title": title,
      "description": description,
      "datasource": {"type": "prometheus", "uid": "${datasource}"},
      "gridPos": {"h": height, "w": width, "x": 0, "y": 0},
      "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
      "options": {"legend": {"displayMode": "list", "placement": "bottom"},
                  "tooltip": {"mode": "multi"}},
      "targets": [{"expr": expr, "legendFormat": legend, "refId": chr(ord("A") + i),
                   "datasource": {"type": "prometheus", "uid": "${datasource}"}}
                  for i, (expr, legend) in enumerate(targets)],
  }
  if stack:
    p["fieldConfig"]["defaults"]["custom"] = {"stacking": {"mode": "normal"}}
  return p


def row(title):
  pid = _next_id[0]
  _next_id[0] += 1
  return {"id": pid, "type": "row", "title": title, "collapsed": False,
          "gridPos": {"h": 1, "w": 24, "x": 0, "y": 0}, "panels": []}


def layout(panels):
  x = y = 0
  row_h = 0
  for p in panels:
    w, h = p["gridPos"]["w"], p["gridPos"]["h"]
    if p["type"] == "row" or x + w > 24:
      x = 0
      y += row_h
      row_h = 0
    p["gridPos"]["x"], p["gridPos"]["y"] = x, y
    x += w
    row_h = max(row_h, h)
    if p["type"] == "row":
      x = 0
      y += h
      row_h = 0
  return panels


def quantiles(metric, by, sel):
  return [("histogram_quantile(%s, sum by (le, %s) (rate(%s_bucket{%s}[%s])))" %
           (q, by, metric, sel, RATE), "p%s {{%s}}" % (q[2:] or "100", by))
          for q in ("0.5", "0.9", "0.99")]


def build():
  panels = [
      row("Overview"),
      panel("Ready", [("posthaste_ready{%s}" % SEL, "{{instance}}")], kind="stat", width=4,
            height=4),
      panel("Open POP3 connections", [("sum(posthaste_pop3_connections_open{%s})" % SEL,
                                       "open")], kind="stat", width=4, height=4),
      panel("Sessions / s", [("sum(rate(posthaste_pop3_sessions_total{%s}[%s]))" % (SEL, RATE),
                              "sessions")], unit="ops", kind="stat", width=4, height=4),
      panel("Login failure ratio",
            [("sum(rate(posthaste_pop3_authentications_total{%s,result=\"failed\"}[%s])) / "
              "sum(rate(posthaste_pop3_authentications_total{%s}[%s]))" % (SEL, RATE, SEL, RATE),
              "failed")], unit="percentunit", kind="stat", width=4, height=4),
      panel("Messages stored", [("sum(posthaste_store_messages{%s})" % SEL, "messages")],
            kind="stat", width=4, height=4),
      panel("Store size", [("sum(posthaste_store_segment_bytes{%s})" % SEL, "bytes")],
            unit="bytes", kind="stat", width=4, height=4),

      row("Tenants"),
      panel("Sessions by tenant",
            [("sum by (tenant) (rate(posthaste_pop3_sessions_total{%s}[%s]))" % (TSEL, RATE),
              "{{tenant}}")], unit="ops", stack=True),
      panel("Session outcomes",
            [("sum by (outcome) (rate(posthaste_pop3_sessions_total{%s}[%s]))" % (TSEL, RATE),
              "{{outcome}}")], unit="ops", stack=True),
      panel("Logins by tenant and result",
            [("sum by (tenant, result) (rate(posthaste_pop3_authentications_total{%s}[%s]))" %
              (TSEL, RATE), "{{tenant}} {{result}}")], unit="ops"),
      panel("Login failures by tenant and mechanism",
            [("sum by (tenant, mechanism) (rate(posthaste_pop3_authentications_total"
              "{%s,result!=\"ok\"}[%s]))" % (TSEL, RATE), "{{tenant}} {{mechanism}}")],
            unit="ops"),
      panel("Mailbox re-downloads by tenant (per hour)",
            [("sum by (tenant) (increase(posthaste_pop3_redownload_sessions_total{%s}[1h]))" %
              TSEL, "{{tenant}}")],
            description="Sessions that retrieved more than --redownload_alarm_percent of a "
            "mailbox of at least --redownload_alarm_messages_min messages: clients that lost "
            "their UIDL state, or a migration that changed UIDLs. The server log has a "
            "\"redownload alarm\" line for each, with the user."),

      row("Commands"),
      panel("Command rate",
            [("sum by (command) (rate(posthaste_pop3_commands_total{%s}[%s]))" % (SEL, RATE),
              "{{command}}")], unit="ops", stack=True),
      panel("Command errors",
            [("sum by (command) (rate(posthaste_pop3_commands_total{%s,result=\"err\"}[%s]))"
              % (SEL, RATE), "{{command}}")], unit="ops"),
      panel("Command latency (p50, p90, p99)",
            quantiles("posthaste_pop3_command_duration_seconds", "command", SEL), unit="s",
            width=24,
            description="From the command being parsed to its status line; PASS includes "
            "password verification and opening the maildrop, QUIT the commit."),

      row("Traffic"),
      panel("Bytes out",
            [("sum by (path) (rate(posthaste_pop3_retrieved_bytes_total{%s}[%s]))" % (SEL, RATE),
              "RETR/TOP {{path}}"),
             ("sum(rate(posthaste_pop3_reply_bytes_total{%s}[%s]))" % (SEL, RATE), "replies")],
            unit="Bps", stack=True),
      panel("Connections accepted and refused",
            [("sum(rate(posthaste_pop3_connections_accepted_total{%s}[%s]))" % (SEL, RATE),
              "accepted"),
             ("sum by (reason) (rate(posthaste_pop3_connections_refused_total{%s}[%s]))" %
              (SEL, RATE), "refused {{reason}}")], unit="ops"),
      panel("TLS handshakes",
            [("sum by (version, outcome) (rate(posthaste_tls_handshakes_total{%s}[%s]))" %
              (SEL, RATE), "{{version}} {{outcome}}")], unit="ops"),
      panel("LMTP deliveries",
            [("sum by (result) (rate(posthaste_lmtp_deliveries_total{%s}[%s]))" % (SEL, RATE),
              "{{result}}")], unit="ops"),

      row("Shards"),
      panel("Reactor busy ratio by shard",
            [("rate(posthaste_reactor_busy_seconds_total{%s}[%s])" % (SHSEL, RATE),
              "shard {{shard}}")], unit="percentunit",
            description="Time outside the blocking io_uring wait per second of wall time."),
      panel("Open connections by shard",
            [("posthaste_pop3_connections_open{%s}" % SHSEL, "shard {{shard}}")]),
      panel("Loop iterations and completions by shard",
            [("rate(posthaste_reactor_loop_iterations_total{%s}[%s])" % (SHSEL, RATE),
              "loops {{shard}}"),
             ("rate(posthaste_reactor_completions_total{%s}[%s])" % (SHSEL, RATE),
              "completions {{shard}}"),
             ("rate(posthaste_reactor_submissions_total{%s}[%s])" % (SHSEL, RATE),
              "submissions {{shard}}")], unit="ops"),
      panel("Saturation signals",
            [("rate(posthaste_reactor_cq_overflows_total{%s}[%s])" % (SHSEL, RATE),
              "CQ overflows {{shard}}"),
             ("sum(rate(posthaste_offload_rejected_total{%s}[%s]))" % (SEL, RATE),
              "offload rejected"),
             ("sum(rate(posthaste_inbox_rejected_total{%s}[%s]))" % (SEL, RATE),
              "inbox rejected")], unit="ops"),

      row("Store"),
      panel("Store size",
            [("sum(posthaste_store_live_bytes{%s})" % SEL, "live"),
             ("sum(posthaste_store_dead_bytes{%s})" % SEL, "dead (reclaimable)"),
             ("sum(posthaste_store_message_bytes{%s})" % SEL, "POP3 octets")], unit="bytes"),
      panel("Messages, accounts, segments",
            [("sum(posthaste_store_messages{%s})" % SEL, "messages"),
             ("sum(posthaste_store_accounts{%s})" % SEL, "accounts"),
             ("sum(posthaste_store_segments{%s})" % SEL, "segments")]),
      panel("RocksDB block cache hit ratio",
            [("sum(rate(posthaste_store_block_cache_hits_total{%s}[%s])) / (sum(rate("
              "posthaste_store_block_cache_hits_total{%s}[%s])) + sum(rate("
              "posthaste_store_block_cache_misses_total{%s}[%s])))" %
              (SEL, RATE, SEL, RATE, SEL, RATE), "hit ratio")], unit="percentunit"),
      panel("Compactions, write stalls, store errors",
            [("sum(rate(posthaste_store_compactions_total{%s}[%s]))" % (SEL, RATE),
              "compactions"),
             ("sum(rate(posthaste_store_write_stall_seconds_total{%s}[%s]))" % (SEL, RATE),
              "write stall s/s"),
             ("sum by (operation) (rate(posthaste_store_errors_total{%s}[%s]))" % (SEL, RATE),
              "errors {{operation}}")], unit="short"),

      row("Process"),
      panel("Memory",
            [("process_resident_memory_bytes{%s}" % SEL, "resident {{instance}}"),
             ("sum by (instance, part) (posthaste_store_index_memory_bytes{%s})" % SEL,
              "index {{part}} {{instance}}"),
             ("posthaste_store_index_block_cache_capacity_bytes{%s}" % SEL,
              "block cache capacity {{instance}}")], unit="bytes", width=8,
            description="The server's resident memory beside the RocksDB index's share of it: "
            "memtables (two of 16 MiB at most), block cache (up to its capacity) and table "
            "readers. What the index does not explain is sessions, buffers and the allocator."),
      panel("Descriptors",
            [("process_open_fds{%s}" % SEL, "open {{instance}}"),
             ("process_max_fds{%s}" % SEL, "limit {{instance}}")], width=8,
            description="At the limit, new POP3 and LMTP connections are answered from a "
            "reserve descriptor with -ERR [SYS/TEMP] and closed, and /metrics answers 503."),
      panel("CPU",
            [("rate(process_cpu_seconds_total{%s}[%s])" % (SEL, RATE), "{{instance}}")],
            width=8, description="Cores in use, user and system time together."),
  ]
  templating = {"list": [
      {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"},
      {"name": "instance", "type": "query", "label": "Instance", "multi": True,
       "includeAll": True, "datasource": {"type": "prometheus", "uid": "${datasource}"},
       "query": "label_values(posthaste_ready, instance)", "refresh": 2},
      {"name": "tenant", "type": "query", "label": "Tenant", "multi": True, "includeAll": True,
       "datasource": {"type": "prometheus", "uid": "${datasource}"},
       "query": "label_values(posthaste_pop3_sessions_total{instance=~\"$instance\"}, tenant)",
       "refresh": 2},
      {"name": "shard", "type": "query", "label": "Shard", "multi": True, "includeAll": True,
       "datasource": {"type": "prometheus", "uid": "${datasource}"},
       "query": "label_values(posthaste_reactor_busy_seconds_total{instance=~\"$instance\"}, "
                "shard)", "refresh": 2},
  ]}
  return {
      "title": "posthaste",
      "uid": "posthaste",
      "description": "posthaste POP3 server: tenants, commands, traffic, shards, store, process.",
      "tags": ["posthaste", "pop3"],
      "timezone": "utc",
      "schemaVersion": 38,
      "version": 1,
      "editable": True,
      "refresh": "30s",
      "time": {"from": "now-6h", "to": "now"},
      "templating": templating,
      "annotations": {"list": []},
      "panels": layout(panels),
  }


if __name__ == "__main__":
  out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "posthaste.json")
  with open(out, "w") as f:
    json.dump(build(), f, indent=2, sort_keys=False)
    f.write("\n")
  print("wrote", out)
