#!/usr/bin/python3
"""Helpers of deploy/helm/test for the chart's rendered manifests (helm template output).

  chart_tools.py objects OUT.json NAME=RENDER.yaml...
      Every object of the renders as a JSON array of {source, object}, for validate/validate.js.
  chart_tools.py sources RENDER.yaml ALERTS.yml DASHBOARD.json
      The render's PrometheusRule spec must be ALERTS.yml (parsed, equal) and its dashboard
      ConfigMap must hold DASHBOARD.json byte for byte: the chart copies, it never edits.
  chart_tools.py rules RENDER.yaml OUT.yml
      The PrometheusRule's spec as a Prometheus rule file, for `promtool check rules`.
  chart_tools.py pod RENDER.yaml OUT.yaml --image=REF --volume=NAME=DIR... [--host-ip=127.0.0.1]
      The Pod of the rendered StatefulSet's template, for `podman kube play` (see pod_from()).
      Prints {"ports": {port name: host port}} as JSON: each container port is published on a
      free port of --host-ip.

Runs on Debian's /usr/bin/python3 with python3-yaml. Exit status 1 with a message on a mismatch.
"""

import argparse
import copy
import json
import socket
import sys

import yaml


def load_render(path):
  with open(path) as f:
    return [doc for doc in yaml.safe_load_all(f) if doc]


def only(objects, kind):
  found = [o for o in objects if o.get("kind") == kind]
  if len(found) != 1:
    sys.exit("expected one %s in the render, found %d" % (kind, len(found)))
  return found[0]


def cmd_objects(args):
  entries = []
  for item in args.renders:
    name, _, path = item.partition("=")
    entries.extend({"source": name, "object": o} for o in load_render(path))
  with open(args.out, "w") as f:
    json.dump(entries, f)


def cmd_sources(args):
  objects = load_render(args.render)
  rule = only(objects, "PrometheusRule")
  with open(args.alerts) as f:
    alerts = yaml.safe_load(f)
  if rule["spec"] != alerts:
    sys.exit("the rendered PrometheusRule's spec differs from %s" % args.alerts)
  dashboards = [o for o in objects
                if o.get("kind") == "ConfigMap" and "posthaste.json" in o.get("data", {})]
  if len(dashboards) != 1:
    sys.exit("expected one dashboard ConfigMap in the render, found %d" % len(dashboards))
  with open(args.dashboard) as f:
    dashboard = f.read()
  # `|-` in the template drops the file's final newline.
  if dashboards[0]["data"]["posthaste.json"] != dashboard.rstrip("\n"):
    sys.exit("the rendered dashboard ConfigMap differs from %s" % args.dashboard)
  json.loads(dashboards[0]["data"]["posthaste.json"])
  labels = dashboards[0]["metadata"].get("labels", {})
  if labels.get("grafana_dashboard") != "1":
    sys.exit("the dashboard ConfigMap lacks the sidecar label grafana_dashboard: \"1\"")
  print("PrometheusRule = %s (%d rules), dashboard ConfigMap = %s" %
        (args.alerts, sum(len(g.get("rules", [])) for g in alerts["groups"]), args.dashboard))


def cmd_rules(args):
  rule = only(load_render(args.render), "PrometheusRule")
  with open(args.out, "w") as f:
    yaml.safe_dump(rule["spec"], f, sort_keys=False)


def free_port(host):
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind((host, 0))
    return s.getsockname()[1]


def pod_from(statefulset, image, volumes, host_ip):
  """The StatefulSet's pod template as the Pod `<name>-0`, changed only where a single host
  without Kubernetes needs it:
    - each volumeClaimTemplate, and each Secret volume, becomes a hostPath of `volumes`
      (NAME=DIR), prepared by the caller (podman has no PersistentVolumeClaims here, and its
      Secret volumes take podman secrets, not a Secret's files);
    - the image is the locally built one;
    - each container port is published on a free port of host_ip (hostPort/hostIP);
    - the Localhost seccomp profile of securityContext.seccompProfile is also given as the
      annotation seccomp.security.alpha.kubernetes.io/pod, which is what podman 4.3 reads (it
      ignores the field): "localhost/" + the profile's file name, to be found in the directory
      given to `podman kube play --seccomp-profile-root` (podman 4.3 mishandles a profile
      path with a directory in it);
    - the probes are dropped: podman turns an httpGet probe into a curl command run inside
      the container, which has no shell and no curl; the caller probes from the host instead.
  Everything else (args, security context, resources, grace period) is the chart's."""
  template = copy.deepcopy(statefulset["spec"]["template"])
  spec = template["spec"]
  name = statefulset["metadata"]["name"] + "-0"
  metadata = {"name": name, "labels": template["metadata"].get("labels", {}),
              "annotations": dict(template["metadata"].get("annotations", {}))}
  seccomp = spec.get("securityContext", {}).get("seccompProfile", {})
  if seccomp.get("type") == "Localhost":
    metadata["annotations"]["seccomp.security.alpha.kubernetes.io/pod"] = (
        "localhost/" + seccomp["localhostProfile"].rsplit("/", 1)[-1])
  spec["hostname"] = name
  claimed = [t["metadata"]["name"] for t in statefulset["spec"].get("volumeClaimTemplates", [])]
  swapped = []
  for claim in claimed:
    swapped.append({"name": claim})
  for volume in spec.get("volumes", []):
    if "secret" in volume:
      swapped.append({"name": volume["name"]})
    else:
      sys.exit("volume %s: only PVCs and Secrets are expected" % volume["name"])
  for volume in swapped:
    if volume["name"] not in volumes:
      sys.exit("no --volume=%s=DIR given" % volume["name"])
    volume["hostPath"] = {"path": volumes[volume["name"]], "type": "Directory"}
  spec["volumes"] = swapped
  ports = {}
  for container in spec["containers"]:
    container["image"] = image
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
      container.pop(probe, None)
    for port in container.get("ports", []):
      port["hostIP"] = host_ip
      port["hostPort"] = free_port(host_ip)
      ports[port["name"]] = port["hostPort"]
  return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}, ports


def cmd_pod(args):
  statefulset = only(load_render(args.render), "StatefulSet")
  volumes = dict(v.split("=", 1) for v in args.volume)
  pod, ports = pod_from(statefulset, args.image, volumes, args.host_ip)
  with open(args.out, "w") as f:
    yaml.safe_dump(pod, f, sort_keys=False)
  print(json.dumps({"pod": pod["metadata"]["name"], "ports": ports}))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  sub = parser.add_subparsers(dest="command", required=True)
  p = sub.add_parser("objects")
  p.add_argument("out")
  p.add_argument("renders", nargs="+")
  p.set_defaults(run=cmd_objects)
  p = sub.add_parser("sources")
  p.add_argument("render")
  p.add_argument("alerts")
  p.add_argument("dashboard")
  p.set_defaults(run=cmd_sources)
  p = sub.add_parser("rules")
  p.add_argument("render")
  p.add_argument("out")
  p.set_defaults(run=cmd_rules)
  p = sub.add_parser("pod")
  p.add_argument("render")
  p.add_argument("out")
  p.add_argument("--image", required=True)
  p.add_argument("--volume", action="append", default=[])
  p.add_argument("--host-ip", default="127.0.0.1")
  p.set_defaults(run=cmd_pod)
  args = parser.parse_args()
  args.run(args)


if __name__ == "__main__":
  main()
