#!/usr/bin/env python3
"""Render charts/policyd with Helm itself and validate every rendered object.

Rendering: helm-python-sdk (PyPI), which binds Helm v4's Go SDK as a shared
library (libhelm_c) shipped in its wheel: the same `chart.render` and `lint`
code the helm CLI runs, offline (no cluster; `lookup` returns nothing).

Validation: kubernetes-validate (PyPI), which ships the Kubernetes OpenAPI
JSON schemas; every object of a built-in kind is validated strictly (unknown
fields refused) against the oldest Kubernetes the chart supports (1.25) and
the newest the package knows. The ServiceMonitor (a prometheus-operator CRD,
which kubernetes-validate has no schema for) is checked by hand: its selector
must select the Service and its port must be the Service's port name. The
CRD in crds/ (which `helm template` does not render) is validated as a
CustomResourceDefinition.

Run by scripts/test.sh with the virtualenv scripts/setup.sh makes; prints
`N passed, M failed` and exits 1 on any failure.
"""

import json
import os
import sys

import helm_python as helm
import kubernetes_validate
import yaml

CHART = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "policyd")
KUBE_VERSIONS = ["1.25.0", kubernetes_validate.latest_version()]

# Value sets: the defaults (bundle.source kubernetes), the ConfigMap source,
# and one turning on every optional template.
VARIANTS = {
    "defaults": {},
    "configMap": {"bundle": {"source": "configMap"}},
    "everything": {
        "bundle": {"source": "kubernetes"},
        "export": {"path": "/var/log/policyd/events.jsonl"},
        "securityContext": {"sysAdmin": True, "privileged": True},
        "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
        "dashboard": {"namespace": "monitoring"},
        "podAnnotations": {"a": "b"},
    },
}

passed = 0
failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok {name}")
    else:
        failed += 1
        print(f"FAILED {name}: {detail}")


def validate(name, obj):
    for version in KUBE_VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
            check(f"{name} valid for Kubernetes {version}", True)
        except kubernetes_validate.ValidationError as e:
            check(f"{name} valid for Kubernetes {version}", False, f"{e.message} at {list(e.path)}")
        except kubernetes_validate.SchemaNotFoundError as e:
            check(f"{name} has a Kubernetes {version} schema", False, str(e))


def render(values):
    with helm.Chart.load(CHART) as chart:
        return chart.render(values, name="policyd", namespace="policyd", is_install=True)


def objects(manifests):
    out = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                out.append((path, doc))
    return out


def main():
    lint = helm.lint(CHART, strict=True, kube_version="v1.25.0")
    problems = [m for m in lint["messages"] if m["severity"] >= 2] + lint["errors"]
    check("helm lint --strict", not problems, problems)

    for path in sorted(os.listdir(os.path.join(CHART, "crds"))):
        with open(os.path.join(CHART, "crds", path)) as f:
            for doc in yaml.safe_load_all(f):
                validate(f"crds/{path}", doc)

    with open(os.path.join(CHART, "dashboards", "policyd.json")) as f:
        dashboard = json.load(f)

    for variant, values in VARIANTS.items():
        manifests = render(values)
        objs = objects(manifests)
        kinds = sorted(o["kind"] for _, o in objs)
        print(f"# {variant}: {', '.join(kinds)}")
        kube = values.get("bundle", {}).get("source", "kubernetes") == "kubernetes"
        expected = {"ConfigMap", "DaemonSet", "Service", "ServiceAccount"}
        if kube:
            expected |= {"ClusterRole", "ClusterRoleBinding"}
        if values.get("serviceMonitor", {}).get("enabled"):
            expected.add("ServiceMonitor")
        check(f"{variant}: rendered kinds", set(kinds) == expected and len(kinds) == len(expected), kinds)
        by_kind = {o["kind"]: o for _, o in objs}
        for path, obj in objs:
            name = f"{variant}: {obj['kind']}/{obj['metadata']['name']} ({path})"
            if obj["apiVersion"] == "monitoring.coreos.com/v1":
                continue
            validate(name, obj)

        ds = by_kind["DaemonSet"]
        pod = ds["spec"]["template"]["spec"]
        container = pod["containers"][0]
        caps = container["securityContext"]["capabilities"]
        want = {"BPF", "PERFMON", "NET_ADMIN", "SYS_RESOURCE"}
        if values.get("securityContext", {}).get("sysAdmin"):
            want.add("SYS_ADMIN")
        check(f"{variant}: capabilities", set(caps["add"]) == want and caps["drop"] == ["ALL"], caps)
        check(f"{variant}: no hostPID", pod["hostPID"] is False)
        check(f"{variant}: metrics port 2112", container["ports"][0]["containerPort"] == 2112)
        source = "--kubernetes" if kube else "--bundle=/etc/policyd/bundle.yaml"
        other = "--bundle=/etc/policyd/bundle.yaml" if kube else "--kubernetes"
        check(
            f"{variant}: bundle source",
            source in container["args"] and other not in container["args"],
            container["args"],
        )
        check(f"{variant}: API token only for --kubernetes", pod["automountServiceAccountToken"] is kube)
        bundle_mount = any(m["mountPath"] == "/etc/policyd" for m in container["volumeMounts"])
        check(f"{variant}: ConfigMap mounted only for configMap", bundle_mount is not kube)
        env = {e["name"]: e for e in container.get("env", [])}
        check(
            f"{variant}: NODE_NAME from the downward API",
            env.get("NODE_NAME", {}).get("valueFrom") == {"fieldRef": {"fieldPath": "spec.nodeName"}},
            env,
        )
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        for path in ["/sys/fs/bpf", "/sys/kernel/tracing", "/sys/fs/cgroup", "/host/proc", "/sys/kernel/btf"]:
            check(f"{variant}: mount {path}", path in mounts, sorted(mounts))
        for path in ["/sys/kernel/tracing", "/sys/fs/cgroup", "/host/proc", "/sys/kernel/btf"]:
            check(f"{variant}: {path} read-only", mounts.get(path, {}).get("readOnly") is True)

        cm = by_kind["ConfigMap"]
        check(f"{variant}: dashboard sidecar label", cm["metadata"]["labels"].get("grafana_dashboard") == "1")
        check(f"{variant}: dashboard content", json.loads(cm["data"]["policyd.json"]) == dashboard)

        if not kube:
            check(f"{variant}: no RBAC without --kubernetes", "ClusterRole" not in by_kind)
            continue
        role = by_kind["ClusterRole"]
        verbs = {(r["apiGroups"][0], res): set(r["verbs"]) for r in role["rules"] for res in r["resources"]}
        binding = by_kind["ClusterRoleBinding"]
        check(
            f"{variant}: the binding names the role and the service account",
            binding["roleRef"]["name"] == role["metadata"]["name"]
            and binding["subjects"]
            == [{"kind": "ServiceAccount", "name": pod["serviceAccountName"], "namespace": "policyd"}],
            binding,
        )
        check(
            f"{variant}: RBAC least privilege",
            verbs
            == {
                ("policyc.dev", "policybundles"): {"get", "list", "watch"},
                ("policyc.dev", "policybundles/status"): {"patch"},
                ("", "pods"): {"list", "watch"},
                ("", "nodes"): {"get"},
            },
            verbs,
        )

        if "ServiceMonitor" in by_kind:
            sm, svc = by_kind["ServiceMonitor"], by_kind["Service"]
            selected = all(svc["metadata"]["labels"].get(k) == v for k, v in sm["spec"]["selector"]["matchLabels"].items())
            check(f"{variant}: ServiceMonitor selects the Service", selected)
            ports = {p["name"] for p in svc["spec"]["ports"]}
            check(f"{variant}: ServiceMonitor port", {e["port"] for e in sm["spec"]["endpoints"]} <= ports)
            check(f"{variant}: ServiceMonitor labels", sm["metadata"]["labels"].get("release") == "kube-prometheus-stack")

    try:
        render({"bundle": {"source": "bogus"}})
        check("a bad bundle.source is refused", False, "rendered")
    except helm.HelmRenderError:
        check("a bad bundle.source is refused", True)

    print(f"chart: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
