#!/usr/bin/python3
"""Helpers of deploy/helm/test for the chart's rendered manifests (helm template output).

  chart_tools.py objects OUT.json NAME=RENDER.yaml...
      Every object of the renders as a JSON array of {source, object}, for validate/validate.js.
  chart_tools.py sources RENDER.yaml ALERTS.yml DASHBOARD.json
      The render's PrometheusRule spec must be ALERTS.yml (parsed, equal) and its dashboard
      ConfigMap must hold DASHBOARD.json byte for byte: the chart copies, it never edits.
  chart_tools.py restricted NAME=RENDER.yaml...
      The pod of the StatefulSet (and of every Deployment: route, nginx, haproxy) meets the "restricted" Pod Security Standard (non-root, no
      privilege escalation, every capability dropped, RuntimeDefault or Localhost seccomp, no
      host namespaces, ports or paths) and the chart's own rules: a read-only root filesystem
      and no service account token.
  chart_tools.py proxy-tier RENDER.yaml NGINX_DIR HAPROXY_DIR
      The scaled-out render (deploy/helm/ci/proxy-tier.yaml) has what docs/DEPLOY.md promises:
      backends registering in etcd under their pod IP (downward API) and taking PROXY headers
      from the proxy networks; route as a Deployment with a Service (auth_http, socketmap);
      nginx's mail proxy as a Deployment whose ConfigMap's nginx.conf sends logins to route's
      Service and the PROXY protocol to backends, on POP3 with STLS required and on POP3S; a
      Service publishing 110 and 995. Writes the nginx.conf into NGINX_DIR with the
      certificate paths under NGINX_DIR and route's Service name replaced by 127.0.0.1, for
      `nginx -t` (which resolves auth_http's host and loads the certificates). HAProxy as a
      Deployment of haproxy and `posthaste route --haproxy_map --haproxy_socket` sharing an
      emptyDir: SNI routing on its pop3s port by that map, PROXY v2 to the backends, a Service
      publishing 995; writes its haproxy.cfg into HAPROXY_DIR (the run directory moved there,
      with an empty map) for `haproxy -c`.
  chart_tools.py spo-profile SECCOMP.json --namespace=NS [--name=posthaste] [--arch=amd64]
      The seccomp profile as a Security Profiles Operator SeccompProfile (see spo_profile()).
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
import os
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


def restricted_violations(statefulset):
  """What in the StatefulSet's pod breaks Kubernetes' "restricted" Pod Security Standard, or
  the chart's own stricter rules (read-only root, no service account token); [] when nothing."""
  spec = statefulset["spec"]["template"]["spec"]
  pod_sc = spec.get("securityContext", {})
  problems = []
  for field in ("hostNetwork", "hostPID", "hostIPC"):
    if spec.get(field):
      problems.append("pod: %s" % field)
  if spec.get("automountServiceAccountToken") is not False:
    problems.append("pod: the service account token is mounted")
  for volume in spec.get("volumes", []):
    if "hostPath" in volume:
      problems.append("volume %s: hostPath" % volume["name"])
  containers = spec.get("containers", []) + spec.get("initContainers", [])
  for c in containers:
    sc = c.get("securityContext", {})
    where = "container %s" % c["name"]
    if not sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")):
      problems.append(where + ": runAsNonRoot is not true")
    if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
      problems.append(where + ": runAsUser 0")
    if sc.get("privileged"):
      problems.append(where + ": privileged")
    if sc.get("allowPrivilegeEscalation") is not False:
      problems.append(where + ": allowPrivilegeEscalation is not false")
    caps = sc.get("capabilities", {})
    if "ALL" not in caps.get("drop", []):
      problems.append(where + ": capabilities.drop lacks ALL")
    if caps.get("add"):
      problems.append(where + ": adds capabilities %s" % caps["add"])
    if sc.get("readOnlyRootFilesystem") is not True:
      problems.append(where + ": the root filesystem is writable")
    seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {}))
    if seccomp.get("type") not in ("RuntimeDefault", "Localhost"):
      problems.append(where + ": seccompProfile %s" % seccomp.get("type"))
    for port in c.get("ports", []):
      if port.get("hostPort"):
        problems.append(where + ": hostPort %d" % port["hostPort"])
  return problems


def cmd_restricted(args):
  for item in args.renders:
    name, _, path = item.partition("=")
    objects = load_render(path)
    problems = restricted_violations(only(objects, "StatefulSet"))
    for deployment in (o for o in objects if o.get("kind") == "Deployment"):
      problems += ["%s: %s" % (deployment["metadata"]["name"], p)
                   for p in restricted_violations(deployment)]
    if problems:
      sys.exit("%s: not restricted: %s" % (name, "; ".join(problems)))
    print("%s: the pod meets the restricted Pod Security Standard, read-only root, no token" %
          name)


def named(objects, kind, name):
  found = [o for o in objects if o.get("kind") == kind and o["metadata"]["name"] == name]
  if len(found) != 1:
    sys.exit("expected one %s %s in the render, found %d" % (kind, name, len(found)))
  return found[0]


def cmd_proxy_tier(args):
  objects = load_render(args.render)
  problems = []

  def expect(condition, what):
    if not condition:
      problems.append(what)

  backend = only(objects, "StatefulSet")
  container = backend["spec"]["template"]["spec"]["containers"][0]
  backend_args = container["args"]
  env = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
         for e in container.get("env", [])}
  for prefix in ("--etcd_endpoints=http", "--advertise_ip=$(POD_IP)", "--proxy_networks=",
                 "--admin_listen="):
    expect(any(a.startswith(prefix) for a in backend_args), "backend args lack " + prefix)
  expect(env.get("POD_IP") == "status.podIP", "backend: POD_IP is not the downward API's podIP")
  policy = only(objects, "NetworkPolicy")
  expect(any(port.get("port") == 2379 for rule in policy["spec"].get("egress", [])
             for port in rule.get("ports", [])), "NetworkPolicy: no egress to etcd (2379)")

  deployments = {o["metadata"]["name"]: o for o in objects if o.get("kind") == "Deployment"}
  routes = [d for d in deployments.values()
            if d["spec"]["template"]["spec"]["containers"][0]["args"][:1] == ["route"]]
  expect(len(routes) == 1, "expected one route Deployment")
  def first_container(d):
    return d["spec"]["template"]["spec"]["containers"][0]["name"]

  nginxes = [d for d in deployments.values() if first_container(d) == "nginx"]
  expect(len(nginxes) == 1, "expected one nginx Deployment")
  haproxies = [d for d in deployments.values() if first_container(d) == "haproxy"]
  expect(len(haproxies) == 1, "expected one haproxy Deployment")
  if problems:
    sys.exit("proxy tier: " + "; ".join(problems))
  route, nginx, haproxy = routes[0], nginxes[0], haproxies[0]
  route_name = route["metadata"]["name"]
  route_args = route["spec"]["template"]["spec"]["containers"][0]["args"]
  for prefix in ("--etcd_endpoints=http", "--auth_http_listen=", "--socketmap_listen=",
                 "--admin_token_file="):
    expect(any(a.startswith(prefix) for a in route_args), "route args lack " + prefix)
  route_service = named(objects, "Service", route_name)
  expect({p["name"] for p in route_service["spec"]["ports"]} >= {"auth-http", "socketmap"},
         "route's Service lacks auth-http or socketmap")
  expect(route_service["spec"]["selector"] == route["spec"]["selector"]["matchLabels"],
         "route's Service does not select route's pods")
  for service in (o for o in objects if o.get("kind") == "Service"):
    selector = service["spec"].get("selector", {})
    selects_backends = all(backend["spec"]["template"]["metadata"]["labels"].get(k) == v
                           for k, v in selector.items())
    for deployment in (route, nginx, haproxy):
      labels = deployment["spec"]["template"]["metadata"]["labels"]
      if selects_backends and all(labels.get(k) == v for k, v in selector.items()):
        problems.append("Service %s selects both the backends and %s" %
                        (service["metadata"]["name"], deployment["metadata"]["name"]))

  nginx_name = nginx["metadata"]["name"]
  conf = named(objects, "ConfigMap", nginx_name)["data"]["nginx.conf"]
  auth_http = "%s.%s.svc:%d/auth" % (
      route_name, "default", next(p["port"] for p in route_service["spec"]["ports"]
                                  if p["name"] == "auth-http"))
  for needed in ("load_module ", "mail {", "auth_http " + auth_http + ";", "proxy_protocol on;",
                 "protocol pop3;", "starttls only;", " ssl;", "pop3_auth plain;"):
    expect(needed in conf, "nginx.conf lacks %r" % needed)
  ports = {p["name"]: p["containerPort"]
           for p in nginx["spec"]["template"]["spec"]["containers"][0]["ports"]}
  expect("listen %d;" % ports.get("pop3", 0) in conf, "nginx.conf does not listen on pop3")
  expect("listen %d ssl;" % ports.get("pop3s", 0) in conf, "nginx.conf does not listen on pop3s")
  nginx_service = named(objects, "Service", nginx_name)
  expect(sorted(p["port"] for p in nginx_service["spec"]["ports"]) == [110, 995],
         "nginx's Service does not publish 110 and 995")
  expect(nginx_service["spec"].get("externalTrafficPolicy") == "Local",
         "nginx's Service loses the client address (externalTrafficPolicy)")
  haproxy_name = check_haproxy(objects, haproxy, expect)
  if problems:
    sys.exit("proxy tier: " + "; ".join(problems))
  write_haproxy_config(objects, haproxy_name, args.haproxy_dir)
  conf = (conf.replace("/etc/nginx/tls/", args.nginx_dir + "/")
          .replace(auth_http, "127.0.0.1:9/auth").replace("/tmp/nginx.pid",
                                                           args.nginx_dir + "/nginx.pid"))
  with open(args.nginx_dir + "/nginx.conf", "w") as f:
    f.write(conf)
  print("proxy tier: backends in etcd by pod IP with --proxy_networks; route %s (Deployment, "
        "Service); nginx %s (ConfigMap, Deployment, Service 110/995); haproxy %s (ConfigMap, "
        "Deployment with route beside it, Service 995)" % (route_name, nginx_name, haproxy_name))


HAPROXY_RUN_DIR = "/run/haproxy/"


def check_haproxy(objects, haproxy, expect):
  """HAProxy's wiring: SNI routing on its pop3s port by the map that the route container in
  the same pod writes and pushes over the runtime socket, PROXY v2 to the backends."""
  name = haproxy["metadata"]["name"]
  conf = named(objects, "ConfigMap", name)["data"]["haproxy.cfg"]
  pod = haproxy["spec"]["template"]["spec"]
  containers = {c["name"]: c for c in pod["containers"]}
  expect(set(containers) == {"haproxy", "route"}, "haproxy's pod is not haproxy and route")
  route_args = containers.get("route", {}).get("args", [])
  expect(route_args[:1] == ["route"], "haproxy's pod: the route container does not run route")
  flags = dict(a[2:].split("=", 1) for a in route_args[1:] if a.startswith("--") and "=" in a)
  map_file, socket = flags.get("haproxy_map", ""), flags.get("haproxy_socket", "")
  expect(flags.get("etcd_endpoints", "").startswith("http"), "haproxy's route: no --etcd_endpoints")
  expect(map_file.startswith(HAPROXY_RUN_DIR) and socket.startswith(HAPROXY_RUN_DIR),
         "haproxy's route: --haproxy_map and --haproxy_socket must be under " + HAPROXY_RUN_DIR)
  port = next((p["containerPort"] for p in containers.get("haproxy", {}).get("ports", [])
               if p["name"] == "pop3s"), 0)
  for needed in ("mode tcp", "bind :%d\n" % port, "req.ssl_sni,lower,map_str(%s)" % map_file,
                 "stats socket %s " % socket, "send-proxy-v2", "set-dst var(sess.owner)",
                 "set-dst-port var(sess.owner)"):
    expect(needed in conf, "haproxy.cfg lacks %r" % needed)
  for c in containers.values():
    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
    expect(mounts.get(HAPROXY_RUN_DIR.rstrip("/")) == "run",
           "haproxy's pod: %s does not mount the shared run volume" % c["name"])
  expect(any(v["name"] == "run" and "emptyDir" in v for v in pod.get("volumes", [])),
         "haproxy's pod: no emptyDir for the map and the socket")
  service = named(objects, "Service", name)
  expect([p["port"] for p in service["spec"]["ports"]] == [995],
         "haproxy's Service does not publish 995 alone")
  expect(service["spec"].get("externalTrafficPolicy") == "Local",
         "haproxy's Service loses the client address (externalTrafficPolicy)")
  return name


def write_haproxy_config(objects, name, haproxy_dir):
  """haproxy.cfg for `haproxy -c`: the pod's run directory moved to `haproxy_dir`, with the
  empty map file the pod starts with."""
  conf = named(objects, "ConfigMap", name)["data"]["haproxy.cfg"]
  with open(os.path.join(haproxy_dir, "haproxy.cfg"), "w") as f:
    f.write(conf.replace(HAPROXY_RUN_DIR, haproxy_dir.rstrip("/") + "/"))
  open(os.path.join(haproxy_dir, "tenants.map"), "w").close()


def cmd_rules(args):
  rule = only(load_render(args.render), "PrometheusRule")
  with open(args.out, "w") as f:
    yaml.safe_dump(rule["spec"], f, sort_keys=False)


SPO_ACTIONS = {"SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
               "SCMP_ACT_TRAP", "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW",
               "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY"}
SPO_OPERATORS = {"SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
                 "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"}
# Go's architecture names (what a profile's includes.arches lists) for the node architectures
# Kubernetes runs on.
GO_ARCHES = {"amd64": "SCMP_ARCH_X86_64", "arm64": "SCMP_ARCH_AARCH64"}


def spo_profile(profile, name, namespace, arch):
  """deploy/image/seccomp.json (the runtime's format) as a Security Profiles Operator
  SeccompProfile (security-profiles-operator.x-k8s.io/v1beta1) for one node architecture and a
  container without capabilities (the chart drops them all). That API has no includes/excludes,
  so they are resolved here: a rule that needs a capability is left out, one that applies
  without it is kept, a rule for other architectures is left out. It has no defaultErrnoRet
  either: unlisted system calls then fail with EPERM instead of ENOSYS (every call posthaste and
  glibc 2.36 make is listed)."""
  native = GO_ARCHES[arch]
  architectures = []
  for entry in profile.get("archMap", []):
    if entry["architecture"] == native:
      architectures = [native] + entry.get("subArchitectures", [])
  syscalls = []
  for rule in profile["syscalls"]:
    includes, excludes = rule.get("includes") or {}, rule.get("excludes") or {}
    unknown = (set(includes) | set(excludes)) - {"caps", "arches"}
    if unknown:
      sys.exit("seccomp rule %s: cannot resolve %s" % (rule["names"], sorted(unknown)))
    if includes.get("caps"):
      continue  # needs a capability the container does not have
    if includes.get("arches") and arch not in includes["arches"]:
      continue
    if excludes.get("arches") and arch in excludes["arches"]:
      continue
    out = {"names": rule["names"], "action": rule["action"]}
    if rule.get("errnoRet") is not None:
      out["errnoRet"] = str(rule["errnoRet"])
    if rule.get("args"):
      out["args"] = []
      for a in rule["args"]:
        arg = {"index": a["index"]}
        arg.update({k: a[k] for k in ("value", "valueTwo") if a.get(k)})  # 0: omitted, the same
        arg["op"] = a["op"]
        out["args"].append(arg)
    syscalls.append(out)
  return {
      "apiVersion": "security-profiles-operator.x-k8s.io/v1beta1",
      "kind": "SeccompProfile",
      "metadata": {"name": name, "namespace": namespace},
      "spec": {"defaultAction": profile["defaultAction"], "architectures": architectures,
               "syscalls": syscalls},
  }


def cmd_spo_profile(args):
  with open(args.profile) as f:
    profile = json.load(f)
  cr = spo_profile(profile, args.name, args.namespace, args.arch)
  allowed = {n for r in cr["spec"]["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" and
             not r.get("args") for n in r["names"]}
  missing = {"io_uring_setup", "io_uring_enter", "io_uring_register"} - allowed
  if missing:
    sys.exit("%s does not allow %s" % (args.profile, sorted(missing)))
  # What the operator's CRD accepts (enums and limits of its v1beta1 schema).
  for rule in cr["spec"]["syscalls"]:
    if rule["action"] not in SPO_ACTIONS or len(rule.get("args", [])) > 6 or any(
        a["op"] not in SPO_OPERATORS for a in rule.get("args", [])):
      sys.exit("rule %s: not expressible as a SeccompProfile" % rule["names"])
  print("# The seccomp profile %s for the Security Profiles Operator (%s nodes, no\n"
        "# capabilities); generated by deploy/helm/chart_tools.py spo-profile. The operator\n"
        "# writes it to each node; the chart then needs\n"
        "#   --set seccompProfile.localhostProfile=operator/%s/%s.json" %
        (args.profile, args.arch, args.namespace, args.name))
  yaml.safe_dump(cr, sys.stdout, sort_keys=False)


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
  p = sub.add_parser("restricted")
  p.add_argument("renders", nargs="+")
  p.set_defaults(run=cmd_restricted)
  p = sub.add_parser("proxy-tier")
  p.add_argument("render")
  p.add_argument("nginx_dir")
  p.add_argument("haproxy_dir")
  p.set_defaults(run=cmd_proxy_tier)
  p = sub.add_parser("spo-profile")
  p.add_argument("profile")
  p.add_argument("--namespace", required=True)
  p.add_argument("--name", default="posthaste")
  p.add_argument("--arch", choices=sorted(GO_ARCHES), default="amd64")
  p.set_defaults(run=cmd_spo_profile)
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
