"""The deployment files (Dockerfile, compose.yaml, k8s/) are valid and tell the truth.

Everything here is offline: compose.yaml is checked against the Compose Specification
schema vendored in check-jsonschema, and each built-in-kind manifest in k8s/ against the
Kubernetes OpenAPI schemas vendored in kubernetes-validate, in strict mode (unknown fields
are errors); the systemd units in deploy/systemd/ are read by tests/deploy/units.py. The
remaining tests pin the operational promises of docs/operations.md: scalable workers with a
soft-shutdown grace period (the same in Compose, Kubernetes and systemd), a single beat, a
durable non-evicting Redis, one broker visibility timeout for every process, and commands
that the `reprise` CLI really has.
"""

from __future__ import annotations

import json
import re
import shlex
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from check_jsonschema.builtin_schemas import get_builtin_schema

from tests.deploy import units as systemd

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
K8S_DIR = ROOT / "k8s"
KUSTOMIZATION = K8S_DIR / "kustomization.yaml"

NAMESPACE = "reprise"
IMAGE = "reprise:latest"
CONFIGMAP = "reprise-config"
SECRET = "reprise-secrets"
REPRISE_SERVICES = {"migrate", "api", "worker", "control", "beat", "flower"}
SECRET_KEYS = {
    "REPRISE_DATABASE_URL",
    "REPRISE_REDIS_URL",
    "REPRISE_SECRET_KEY",
    "REPRISE_FLOWER_BASIC_AUTH",
}
MIN_WORKER_GRACE_SECONDS = 60

# The oldest Kubernetes minor we support and the newest one kubernetes-validate ships
# (catches APIs that newer clusters removed).
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())

# Kinds served by CustomResourceDefinitions: kubernetes-validate ships schemas only for
# built-in kinds, so these cannot be schema-checked offline. Anything not listed here must
# validate; an unknown kind fails with SchemaNotFoundError instead of being skipped.
CRD_KINDS = {("keda.sh/v1alpha1", "ScaledObject")}


def _load_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict)
    return data


def _k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    """Every manifest in k8s/ (not the kustomization), as (file name, document)."""
    docs = []
    for path in sorted(K8S_DIR.glob("*.yaml")):
        if path == KUSTOMIZATION:
            continue
        docs.extend((path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc)
    return docs


COMPOSE = _load_compose()
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
K8S_DOCS = _k8s_documents()


def _is_crd(doc: dict[str, Any]) -> bool:
    return (doc["apiVersion"], doc["kind"]) in CRD_KINDS


def _k8s(kind: str, name: str) -> dict[str, Any]:
    matches = [d for _, d in K8S_DOCS if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected exactly one {kind}/{name} in k8s/"
    return matches[0]


def _pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    for _, doc in K8S_DOCS:
        if doc["kind"] in {"Deployment", "Job"}:
            yield f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]


def _containers() -> Iterator[tuple[str, dict[str, Any]]]:
    for owner, pod in _pod_specs():
        for container in pod["containers"]:
            yield f"{owner}/{container['name']}", container


def _compose_argv(value: str | list[str]) -> list[str]:
    argv = shlex.split(value) if isinstance(value, str) else list(value)
    if argv and argv[0] in {"CMD", "CMD-SHELL"}:  # healthcheck `test` form
        argv = argv[1:] if argv[0] == "CMD" else shlex.split(" ".join(argv[1:]))
    return argv


def _seconds(duration: str | int) -> float:
    """A Compose duration ("90s", "1m30s", "2m") in seconds."""
    if isinstance(duration, int):
        return float(duration)
    units = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)", duration)
    assert "".join(n + u for n, u in parts) == duration, f"not a duration: {duration!r}"
    return sum(float(n) * units[u] for n, u in parts)


def _compose_default(value: str) -> str:
    """The value of `${VAR:-default}` when VAR is unset (a literal stays itself)."""
    match = re.fullmatch(r"\$\{\w+:-([^}]*)\}", value)
    return match.group(1) if match else value


# --- schemas ----------------------------------------------------------------------------


def test_compose_file_matches_the_compose_specification() -> None:
    schema = get_builtin_schema("vendor.compose-spec")
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(COMPOSE)]
    assert errors == []


def test_compose_schema_check_rejects_an_unknown_service_key() -> None:
    schema = get_builtin_schema("vendor.compose-spec")
    broken = {"services": {"api": {"image": IMAGE, "stop_grace_perod": "60s"}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize(
    "doc",
    [doc for _, doc in K8S_DOCS],
    ids=[f"{name}:{doc['kind']}/{doc['metadata']['name']}" for name, doc in K8S_DOCS],
)
def test_k8s_manifest_matches_the_kubernetes_schema(doc: dict[str, Any], version: str) -> None:
    if _is_crd(doc):
        pytest.skip(
            f"{doc['apiVersion']} {doc['kind']} is a CRD; kubernetes-validate ships only "
            "built-in schemas (its target is checked by a dedicated test)"
        )
    problem = None
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        # Reported outside the handler: the error's own repr embeds the whole schema.
        problem = f"{'.'.join(map(str, error.path))}: {error.message}"
    assert problem is None, problem


def test_keda_scaled_object_scales_the_worker_deployment_on_the_runs_queue() -> None:
    scaled = [doc for _, doc in K8S_DOCS if doc["kind"] == "ScaledObject"]
    assert len(scaled) == 1
    spec = scaled[0]["spec"]
    target = spec["scaleTargetRef"]
    assert target.get("kind", "Deployment") == "Deployment"
    worker = _k8s("Deployment", target["name"])
    assert worker["metadata"]["labels"]["app.kubernetes.io/component"] == "worker"
    assert scaled[0]["metadata"]["namespace"] == worker["metadata"]["namespace"]
    [trigger] = spec["triggers"]
    assert trigger["type"] == "redis"
    assert trigger["metadata"]["listName"] == "reprise.runs"
    assert spec["minReplicaCount"] >= 1


def test_kustomization_lists_every_core_manifest_and_no_crd() -> None:
    kustomization = yaml.safe_load(KUSTOMIZATION.read_text())
    files: dict[str, list[dict[str, Any]]] = {}
    for name, doc in K8S_DOCS:
        files.setdefault(name, []).append(doc)
    core = {name for name, docs in files.items() if not any(_is_crd(d) for d in docs)}
    assert set(kustomization["resources"]) == core
    assert len(kustomization["resources"]) == len(core), "a resource is listed twice"
    assert kustomization["namespace"] == NAMESPACE
    for name, doc in K8S_DOCS:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == NAMESPACE, name


# --- containers -------------------------------------------------------------------------


def test_every_container_runs_the_image_as_non_root_with_shared_settings() -> None:
    containers = dict(_containers())
    assert {name.split("/")[1] for name in containers} >= {f"reprise-{s}" for s in REPRISE_SERVICES}
    for name, container in containers.items():
        assert container["image"] == IMAGE, name
        assert container["securityContext"]["runAsNonRoot"] is True, name
        assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
        env_from = container["envFrom"]
        assert {"configMapRef": {"name": CONFIGMAP}} in env_from, name
        assert {"secretRef": {"name": SECRET}} in env_from, name
        # `command` would replace the image's tini entrypoint, which forwards SIGTERM.
        assert "command" not in container, name
        assert {"requests", "limits"} <= container["resources"].keys(), name


def test_services_route_to_a_named_container_port() -> None:
    services = [doc for _, doc in K8S_DOCS if doc["kind"] == "Service"]
    assert {s["metadata"]["name"] for s in services} == {"reprise-api", "reprise-flower"}
    for service in services:
        selector = service["spec"]["selector"]
        pods = [
            doc["spec"]["template"]
            for _, doc in K8S_DOCS
            if doc["kind"] == "Deployment"
            and selector.items() <= doc["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(pods) == 1, service["metadata"]["name"]
        port_names = {p["name"] for c in pods[0]["spec"]["containers"] for p in c["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names


def test_api_has_probes_a_service_on_port_80_and_cpu_autoscaling() -> None:
    api = _k8s("Deployment", "reprise-api")
    assert api["spec"]["replicas"] == 2
    [container] = api["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    [port] = _k8s("Service", "reprise-api")["spec"]["ports"]
    assert (port["port"], container["ports"][0]["containerPort"]) == (80, 8000)
    hpa = _k8s("HorizontalPodAutoscaler", "reprise-api")["spec"]
    assert hpa["scaleTargetRef"]["name"] == "reprise-api"
    assert [m["resource"]["name"] for m in hpa["metrics"]] == ["cpu"]


def test_flower_requires_basic_auth_from_the_secret() -> None:
    [container] = _k8s("Deployment", "reprise-flower")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    ref = env["REPRISE_FLOWER_BASIC_AUTH"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": SECRET, "key": "REPRISE_FLOWER_BASIC_AUTH"}
    assert "${REPRISE_FLOWER_BASIC_AUTH:?" in SERVICES["flower"]["environment"][ref["key"]]


def test_secret_is_a_template_of_placeholders() -> None:
    secret = _k8s("Secret", SECRET)
    assert secret["stringData"] == dict.fromkeys(SECRET_KEYS, "CHANGE-ME")


def test_every_configured_variable_is_a_setting_the_code_reads() -> None:
    from reprise_server.shared.settings import Settings  # the one settings class (STYLE.md)

    prefix = Settings.model_config["env_prefix"]
    fields = {prefix + name.upper() for name in Settings.model_fields}
    configured = set(_k8s("ConfigMap", CONFIGMAP)["data"]) | SECRET_KEYS
    for service in REPRISE_SERVICES:
        configured |= set(SERVICES[service]["environment"])
    assert configured - fields == set()


# --- operational promises ---------------------------------------------------------------


def test_workers_get_a_grace_period_for_celery_soft_shutdown() -> None:
    worker = SERVICES["worker"]
    assert worker["stop_signal"] == "SIGTERM"
    assert _seconds(worker["stop_grace_period"]) >= MIN_WORKER_GRACE_SECONDS
    pod = _k8s("Deployment", "reprise-worker")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= MIN_WORKER_GRACE_SECONDS
    # The systemd unit gives the same grace, and stops with the SIGTERM the worker treats
    # as a warm shutdown, to every process of the unit (systemd's default) or to the main
    # process alone: tests/deploy/test_systemd_units.py stops a real worker both ways.
    unit = systemd.units()["reprise-worker"]
    assert unit.timeout_stop_seconds == _seconds(worker["stop_grace_period"])
    assert unit.timeout_stop_seconds == pod["terminationGracePeriodSeconds"]
    assert unit.kill_signal == signal.SIGTERM
    assert unit.kill_mode in {"control-group", "mixed"}


def test_worker_service_can_be_scaled() -> None:
    worker = SERVICES["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker


def test_the_control_plane_runs_apart_from_the_workers_with_probes() -> None:
    control = _k8s("Deployment", "reprise-control")["spec"]
    assert 1 <= control["replicas"] <= 2
    [container] = control["template"]["spec"]["containers"]
    assert container["args"] == ["reprise", "control"]
    assert container["livenessProbe"]["exec"]["command"] == ["reprise", "healthcheck", "control"]
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]
    assert _compose_argv(SERVICES["control"]["command"]) == ["reprise", "control"]
    [worker] = _k8s("Deployment", "reprise-worker")["spec"]["template"]["spec"]["containers"]
    assert worker["args"] == ["reprise", "worker"]


def test_beat_runs_as_a_single_replica_recreated_on_rollout() -> None:
    beat = _k8s("Deployment", "reprise-beat")["spec"]
    assert beat["replicas"] == 1
    assert beat["strategy"] == {"type": "Recreate"}
    assert SERVICES["beat"]["deploy"]["replicas"] == 1


def test_redis_keeps_an_fsynced_aof_and_never_evicts() -> None:
    command = " ".join(_compose_argv(SERVICES["redis"]["command"]))
    assert "--appendonly yes" in command
    assert "--appendfsync everysec" in command
    assert "--maxmemory-policy noeviction" in command


def test_every_process_uses_the_same_broker_visibility_timeout() -> None:
    key = "REPRISE_BROKER_VISIBILITY_TIMEOUT"
    values = {name: SERVICES[name]["environment"][key] for name in REPRISE_SERVICES}
    assert len(set(values.values())) == 1, values
    k8s_value = _k8s("ConfigMap", CONFIGMAP)["data"][key]
    assert _compose_default(values["api"]) == k8s_value
    for name, container in _containers():  # no container overrides the ConfigMap's value
        assert key not in {e["name"] for e in container.get("env", [])}, name


def test_required_secrets_fail_fast_in_compose() -> None:
    text = COMPOSE_FILE.read_text()
    for variable in ("POSTGRES_PASSWORD", "REPRISE_SECRET_KEY", "REPRISE_FLOWER_BASIC_AUTH"):
        assert f"${{{variable}:?" in text, variable
        assert f"${{{variable}:-" not in text, f"{variable} must have no default"


def test_compose_api_healthcheck_probes_healthz() -> None:
    argv = _compose_argv(SERVICES["api"]["healthcheck"]["test"])
    assert argv[:2] == ["python", "-c"]
    assert "http://127.0.0.1:8000/healthz" in argv[2]


def test_image_installs_the_server_and_runs_the_api_as_a_non_root_user() -> None:
    text = DOCKERFILE.read_text()
    lines = [line.strip() for line in text.splitlines()]
    [user] = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert user.split(":")[0] not in {"0", "root"}
    # the SDK and the server, with both packet stores
    assert re.search(r"\bpip install \. '\./server\[s3\]'(\s|$)", text, re.MULTILINE)
    assert "EXPOSE 8000 5555" in lines
    [cmd] = [json.loads(line[len("CMD ") :]) for line in lines if line.startswith("CMD ")]
    assert cmd == ["reprise", "api", "--host", "0.0.0.0", "--port", "8000"]


# --- entry points -----------------------------------------------------------------------


def _reprise_invocations() -> list[tuple[str, list[str]]]:
    """Every `reprise ...` command line the deployment files run, with where it is."""
    found: list[tuple[str, list[str]]] = []
    for name, service in SERVICES.items():
        if "command" in service:
            found.append((f"compose {name} command", _compose_argv(service["command"])))
        if "healthcheck" in service:
            test = service["healthcheck"]["test"]
            found.append((f"compose {name} healthcheck", _compose_argv(test)))
    for where, container in _containers():
        found.append((f"k8s {where}", [*container.get("command", []), *container["args"]]))
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            if "exec" in container.get(probe, {}):
                found.append((f"k8s {where} {probe}", container[probe]["exec"]["command"]))
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("CMD "):
            found.append(("Dockerfile CMD", json.loads(line[len("CMD ") :])))
    for name, unit in systemd.units().items():
        # systemd wants an absolute path: the `reprise` script of the install's virtualenv.
        program, *args = unit.exec_start
        assert program.startswith("/"), name
        assert Path(program).name == "reprise", name
        found.append((f"systemd {name} ExecStart", ["reprise", *args]))
    return [(where, argv) for where, argv in found if argv and argv[0] == "reprise"]


def test_deployment_files_run_every_process_through_the_reprise_cli() -> None:
    runs_reprise = {
        name
        for name, service in SERVICES.items()
        if _compose_argv(service.get("command", []))[:1] == ["reprise"]
    }
    assert runs_reprise == REPRISE_SERVICES
    invocations = _reprise_invocations()
    run = {argv[1] for _, argv in invocations}
    assert run >= {"migrate", "api", "worker", "control", "beat", "flower", "healthcheck"}
    for where, argv in invocations:
        if argv[1] == "healthcheck":
            assert argv[2:] in (["worker"], ["control"], ["beat"]), where


def test_systemd_units_run_every_process_with_a_bounded_stop() -> None:
    found = {unit.exec_start[1]: unit for unit in systemd.units().values()}
    assert set(found) == REPRISE_SERVICES
    assert found["migrate"].service("Type") == "oneshot"
    for command, unit in found.items():
        assert unit.service("EnvironmentFile") == "/etc/reprise/reprise.env", unit.name
        assert unit.service("User") not in {"", "root"}, unit.name
        if command != "migrate":
            assert 0 < unit.timeout_stop_seconds <= found["worker"].timeout_stop_seconds
    assert found["control"].timeout_stop_seconds == _seconds(SERVICES["control"]["stop_grace_period"])


def test_every_reprise_command_is_a_real_cli_subcommand() -> None:
    from reprise.cli import command_names

    names = command_names()
    unknown = [(where, argv[1]) for where, argv in _reprise_invocations() if argv[1] not in names]
    assert unknown == []


def test_every_reprise_command_line_parses_with_the_real_cli() -> None:
    """Flags too (``--port``, ``--host``, ``healthcheck worker``), not only subcommands."""
    from reprise.cli import build_parser

    parser = build_parser()
    refused = []
    for where, argv in _reprise_invocations():
        try:
            parser.parse_args(argv[1:])
        except SystemExit:
            refused.append((where, argv))
    assert refused == []


def test_worker_grace_period_covers_the_soft_shutdown() -> None:
    key = "REPRISE_WORKER_SOFT_SHUTDOWN_SECONDS"
    compose_soft = float(SERVICES["worker"]["environment"][key])
    assert _seconds(SERVICES["worker"]["stop_grace_period"]) >= compose_soft + 10
    k8s_soft = float(_k8s("ConfigMap", CONFIGMAP)["data"][key])
    pod = _k8s("Deployment", "reprise-worker")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= k8s_soft + 10


def test_worker_metrics_port_is_declared_where_prometheus_looks() -> None:
    key = "REPRISE_WORKER_METRICS_PORT"
    port = int(_k8s("ConfigMap", CONFIGMAP)["data"][key])
    assert int(SERVICES["worker"]["environment"][key]) == port
    template = _k8s("Deployment", "reprise-worker")["spec"]["template"]
    [container] = template["spec"]["containers"]
    assert {"name": "metrics", "containerPort": port} in container["ports"]
    assert template["metadata"]["annotations"]["prometheus.io/port"] == str(port)


def test_flower_probes_use_its_unauthenticated_healthcheck_page() -> None:
    [container] = _k8s("Deployment", "reprise-flower")["spec"]["template"]["spec"]["containers"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthcheck"
    argv = _compose_argv(SERVICES["flower"]["healthcheck"]["test"])
    assert "http://127.0.0.1:5555/healthcheck" in argv[-1]
