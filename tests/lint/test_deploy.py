#!/usr/bin/env python3
"""deploy/ checked against what it runs: every YAML parses; the Kubernetes
probes, ports and paths match the configuration each container carries;
every shipped configuration passes bootstrapd --check-config; the systemd
unit passes systemd-analyze verify; the Dockerfile is multi-stage and ends
as a non-root user with a HEALTHCHECK. (The image itself is not built here:
building needs the debian:12 image from a registry this machine cannot reach.)"""

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

ROOT = os.environ.get("BOOTSTRAPD_SOURCE_ROOT") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
DEPLOY = os.path.join(ROOT, "deploy")
BINARY = os.environ.get("BOOTSTRAPD") or os.path.join(ROOT, "build", "bootstrapd")
problems = []


def port_of(listen):
    return int(listen.rsplit(":", 1)[1])


def check_config(name, cfg):
    """bootstrapd --check-config on CFG, its /etc/bootstrapd paths moved into a temporary folder."""
    tmp = tempfile.mkdtemp(prefix="bootstrapd-deploy-")
    try:
        text = json.dumps(cfg).replace("/etc/bootstrapd/", tmp + "/")
        fixed = json.loads(text)
        for key in ("regions",):
            if key in fixed:
                os.makedirs(os.path.dirname(fixed[key]), exist_ok=True)
                shutil.copy(os.path.join(ROOT, "data", "regions.json"), fixed[key])
        if "secret_key_file" in fixed:
            os.makedirs(os.path.dirname(fixed["secret_key_file"]), exist_ok=True)
            with open(fixed["secret_key_file"], "w") as f:
                f.write("00" * 32 + "\n")
            os.chmod(fixed["secret_key_file"], 0o600)
        path = os.path.join(tmp, "config.json")
        with open(path, "w") as f:
            json.dump(fixed, f)
        env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0")
        r = subprocess.run([BINARY, "--config", path, "--check-config"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=30, env=env)
        if r.returncode != 0:
            problems.append("%s: --check-config failed: %s" % (name, r.stderr.decode(errors="replace").strip()))
    finally:
        shutil.rmtree(tmp)


def main():
    yamls = sorted(glob.glob(os.path.join(DEPLOY, "*.yaml")) + glob.glob(os.path.join(DEPLOY, "k8s", "*.yaml")))
    docs = {}
    for y in yamls:
        try:
            docs[y] = [d for d in yaml.safe_load_all(open(y)) if d]
        except yaml.YAMLError as e:
            problems.append("%s: not YAML: %s" % (y, e))
    # Every configuration shipped as a file.
    for path in sorted(glob.glob(os.path.join(DEPLOY, "config", "*.json"))):
        check_config(os.path.relpath(path, ROOT), json.load(open(path)))
    # Kubernetes: the configuration each container is given, and its probes.
    k8s = [d for y, ds in docs.items() if "/k8s/" in y for d in ds]
    configmaps = {d["metadata"]["name"]: d for d in k8s if d["kind"] == "ConfigMap"}
    deployments = [d for d in k8s if d["kind"] == "Deployment"]
    if not deployments:
        problems.append("deploy/k8s: no Deployment")
    for dep in deployments:
        name = dep["metadata"]["name"]
        spec = dep["spec"]["template"]["spec"]
        for c in spec["containers"]:
            args = c.get("args", [])
            cfg_path = args[args.index("--config") + 1]
            role = args[args.index("--role") + 1]
            mount = [m for m in c["volumeMounts"] if cfg_path.startswith(m["mountPath"] + "/")]
            vol = [v for v in spec["volumes"] if mount and v["name"] == mount[0]["name"]]
            if not vol or "configMap" not in vol[0]:
                problems.append("%s: %s is not in a ConfigMap it mounts" % (name, cfg_path))
                continue
            cfg = json.loads(configmaps[vol[0]["configMap"]["name"]]["data"][os.path.basename(cfg_path)])
            check_config("%s %s" % (name, cfg_path), cfg)
            ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
            ops = cfg["admin"]["listen"] if role != "worker" else cfg["worker"]["listen"]
            for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                p = c.get(probe, {}).get("httpGet", {})
                if p.get("path") != path:
                    problems.append("%s: %s path %r, not %s" % (name, probe, p.get("path"), path))
                if ports.get(p.get("port"), p.get("port")) != port_of(ops):
                    problems.append("%s: %s port %r is not the ops listener's %s" % (name, probe, p.get("port"), ops))
            if role != "worker" and ports.get("public") != port_of(cfg["public"]["listen"]):
                problems.append("%s: containerPort public %r, the config listens on %s" % (
                    name, ports.get("public"), cfg["public"]["listen"]))
            pre = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
            grace = spec.get("terminationGracePeriodSeconds", 30)
            drain = cfg.get("drain_grace_s", 0) + cfg.get("drain_timeout_s", 10)
            if pre + drain >= grace:
                problems.append("%s: preStop %ss and drain %ss (grace and timeout) do not fit "
                                "terminationGracePeriodSeconds %s" % (name, pre, drain, grace))
            if role != "worker" and pre == 0:
                problems.append("%s: no preStop: the load balancer would still send during the drain" % name)
            # A Secret's files are root's, and group-readable under fsGroup:
            # bootstrapd refuses such a key (secret.c), so it must be copied.
            key = cfg.get("secret_key_file", "")
            kmount = [m for m in c["volumeMounts"] if key.startswith(m["mountPath"] + "/")]
            kvol = [v for v in spec["volumes"] if kmount and v["name"] == kmount[0]["name"]]
            if not kvol:
                problems.append("%s: secret_key_file %s is on no volume it mounts" % (name, key))
            elif "secret" in kvol[0]:
                problems.append("%s: secret_key_file %s is read from a Secret volume, whose files bootstrapd "
                                "refuses (root's, 0440 under fsGroup): copy it in an initContainer" % (name, key))
            elif not any(m["name"] == kvol[0]["name"] for i in spec.get("initContainers", [])
                         for m in i.get("volumeMounts", [])):
                problems.append("%s: nothing puts secret_key_file %s on its volume" % (name, key))
    labels = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"] for d in deployments}
    for d in k8s:
        if d["kind"] == "HorizontalPodAutoscaler" and d["spec"]["scaleTargetRef"]["name"] not in labels:
            problems.append("HPA %s scales no Deployment here" % d["metadata"]["name"])
        if d["kind"] in ("PodDisruptionBudget", "Service"):
            sel = d["spec"]["selector"].get("matchLabels", d["spec"]["selector"])
            if not any(all(l.get(k) == v for k, v in sel.items()) for l in labels.values()):
                problems.append("%s %s selects no pod" % (d["kind"], d["metadata"]["name"]))
    # Compose: the API's ports and health check against the image's configuration.
    compose = docs.get(os.path.join(DEPLOY, "compose.yaml"), [{}])[0]
    api_cfg = json.load(open(os.path.join(DEPLOY, "config", "api.json")))
    api = compose.get("services", {}).get("api", {})
    published = " ".join(api.get("ports", []))
    for listen in (api_cfg["public"]["listen"], api_cfg["admin"]["listen"]):
        if ":%d" % port_of(listen) not in published:
            problems.append("compose api: %s is not published (%s)" % (listen, published))
    if "/readyz" not in " ".join(api.get("healthcheck", {}).get("test", [])):
        problems.append("compose api: its health check is not /readyz")
    # The Dockerfile.
    df = open(os.path.join(DEPLOY, "Dockerfile")).read()
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", df, re.M)
    final = df[df.rindex("\nFROM "):]
    if len(stages) < 2 or not all(s[0].startswith("debian:12") for s in stages):
        problems.append("Dockerfile: not multi-stage on Debian 12: %r" % stages)
    if not re.search(r"^USER\s+(?!root)\S+", final, re.M) or "HEALTHCHECK" not in final:
        problems.append("Dockerfile: the final stage needs a non-root USER and a HEALTHCHECK")
    for src in re.findall(r"^COPY\s+(?!--from)(\S+)\s", df, re.M):
        if src != "." and not os.path.exists(os.path.join(ROOT, src)):
            problems.append("Dockerfile: COPY %s: no such file" % src)
    if "build-essential" in final or "-dev " in final:
        problems.append("Dockerfile: the final stage installs build tools")
    # systemd.
    analyze = shutil.which("systemd-analyze")
    if analyze:
        tmp = tempfile.mkdtemp(prefix="bootstrapd-unit-")
        try:
            unit = open(os.path.join(DEPLOY, "bootstrapd.service")).read().replace("/usr/bin/bootstrapd",
                                                                                  os.path.abspath(BINARY))
            path = os.path.join(tmp, "bootstrapd.service")
            with open(path, "w") as f:
                f.write(unit)
            r = subprocess.run([analyze, "verify", path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               timeout=60)
            out = r.stdout.decode(errors="replace").strip()
            if r.returncode != 0 or "bootstrapd.service" in out:
                problems.append("systemd-analyze verify: %s" % out)
        finally:
            shutil.rmtree(tmp)
    else:
        print("systemd-analyze not found: the unit is not verified")
    for p in problems:
        print(p)
    print("deploy/: %d YAML files, %d Deployments, %d problems" % (len(yamls), len(deployments), len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
