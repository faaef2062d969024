"""The files under deploy/ agree with each other and with the code, and Prometheus' own tools accept them.

No Docker is needed. promtool and amtool must be on PATH (Debian and Ubuntu: apt-get install prometheus
prometheus-alertmanager); without them the tests that run them fail with that command, they never skip. The
Kubernetes manifests are checked against Kubernetes' own resource schemas by kubernetes-validate (the test
extra), which carries them: no cluster and no network needed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from monitor.devtools.kafka_jars import KAFKA_VERSION
from monitor.settings import load_config

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
PROMETHEUS_DIR = DEPLOY / "prometheus"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
RULES_DIR = PROMETHEUS_DIR / "rules"
RULE_TESTS_DIR = PROMETHEUS_DIR / "tests"
ALERTMANAGER_CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "sequence-monitor.json"
GRAFANA_PROVISIONING = DEPLOY / "grafana" / "provisioning"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "docker-compose.yml"
K8S = DEPLOY / "k8s"
JOB = "sequence-monitor"
STATE_DIR = "/var/lib/monitor"
INSTALL_HINT = "apt-get install prometheus prometheus-alertmanager"
# The Kubernetes release whose schemas the manifests must satisfy (kubernetes-validate carries one set per
# release), and the kinds it has none for: the Prometheus Operator's custom resources. Any other kind without
# a schema fails, so a built-in kind is never skipped unnoticed.
KUBERNETES_VERSION = "1.31"
CUSTOM_RESOURCES = {("monitoring.coreos.com/v1", "PrometheusRule"), ("monitoring.coreos.com/v1", "ServiceMonitor")}

# The metrics monitor/export.py exports (histograms with their _bucket/_sum/_count series): the contract the
# rules, the dashboard and the rule tests are written against.
EXPORTED_METRICS = {
    "sequence_monitor_records_total",
    "sequence_monitor_dead_letters_total",
    "sequence_monitor_abnormal_records_total",
    "sequence_monitor_windows_closed_total",
    *(f"sequence_monitor_{histogram}{suffix}"
      for histogram in ("reconstruction_error", "batch_duration_seconds")
      for suffix in ("_bucket", "_sum", "_count")),
    *(f"sequence_monitor_open_window_{name}"
      for name in ("weighted_mean_error", "weight_sum", "weighted_error_sum", "records")),
    *(f"sequence_monitor_window_{name}"
      for name in ("weighted_mean_error", "weight_sum", "weighted_error_sum", "records", "above_threshold_ratio",
                   "zscore", "percentile", "distribution_distance", "verdict", "start_timestamp_seconds",
                   "abnormal_streak", "signal", "p_value", "outliers")),
    "sequence_monitor_baseline_median_error",
    "sequence_monitor_baseline_mad_error",
    "sequence_monitor_baseline_windows",
    "sequence_monitor_consumer_lag_records",
    "sequence_monitor_event_time_lag_seconds",
    "sequence_monitor_partitions_unreachable",
    "sequence_monitor_checkpoint_age_seconds",
    "sequence_monitor_model_info",
    "sequence_monitor_ready",
    "sequence_monitor_model_decisions_total",
    *(f"sequence_monitor_candidate_{name}"
      for name in ("normal_kept_ratio", "flagged_kept_ratio", "flag_rate", "expected_flag_rate")),
    "sequence_monitor_format_share",
    "sequence_monitor_new_format_share",
    "sequence_monitor_vanished_format_baseline_share",
    "sequence_monitor_format_distance",
    "sequence_monitor_window_judged_timestamp_seconds",
    # The consumer group (state.store: kafka).
    "sequence_monitor_partitions_owned",
    "sequence_monitor_judge_role",
    "sequence_monitor_rebalances_total",
    "sequence_monitor_restores_total",
    *(f"sequence_monitor_restore_seconds{suffix}" for suffix in ("_bucket", "_sum", "_count")),
    "sequence_monitor_last_restore_seconds",
    "sequence_monitor_transaction_aborts_total",
    "sequence_monitor_state_unreadable_records_total",
    "sequence_monitor_state_stopped_partitions",
    "sequence_monitor_committed_offsets_wait_seconds",
}
# Each alert the runbooks promise, with the series its expression must read.
REQUIRED_ALERTS = {
    "SequenceMonitorAbnormalHour": {"sequence_monitor_window_verdict"},
    "SequenceMonitorFormatDrift": {"sequence_monitor_window_abnormal_streak"},
    "SequenceMonitorDown": {"up"},
    "SequenceMonitorNoData": {"sequence_monitor_records_total", "up"},
    "SequenceMonitorConsumerLagGrowing": {"sequence_monitor_consumer_lag_records"},
    "SequenceMonitorDeadLettersSurging": {"sequence_monitor_records_total"},
    "SequenceMonitorCheckpointStale": {"sequence_monitor_checkpoint_age_seconds"},
    "SequenceMonitorNewFormat": {"sequence_monitor_new_format_share"},
    "SequenceMonitorFormatVanished": {"sequence_monitor_vanished_format_baseline_share"},
    "SequenceMonitorHoursNotJudged": {"sequence_monitor_window_judged_timestamp_seconds"},
    "SequenceMonitorRestoreSlow": {"sequence_monitor_last_restore_seconds"},
    "SequenceMonitorTransactionsAborting": {"sequence_monitor_transaction_aborts_total"},
    "SequenceMonitorHangingTransaction": {"sequence_monitor_committed_offsets_wait_seconds"},
}
_METRIC_NAME = re.compile(r"\b(sequence_monitor_[a-z_]+)\b")
_RECORDED_NAME = re.compile(r"\b([a-z_]+:[a-z0-9_]+:[a-z0-9_]+)\b")
_EXACT_VERSION_TAG = re.compile(r"^v?\d+\.\d+\.\d+([.-][0-9A-Za-z.-]+)?$")


# -- reading the files -------------------------------------------------------------------------------------


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _yaml_documents(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _compose() -> dict[str, Any]:
    services: dict[str, Any] = _yaml(COMPOSE)["services"]
    return services


def _k8s(kind: str) -> dict[str, Any]:
    found = [doc for path in sorted(K8S.glob("*.yaml")) for doc in _yaml_documents(path) if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind} under {K8S}, found {len(found)}"
    manifest: dict[str, Any] = found[0]
    return manifest


def _k8s_resources() -> list[tuple[str, dict[str, Any]]]:
    """(where, manifest) of every document of every manifest under deploy/k8s (kustomize's own file left out)."""
    return [(f"{path.name} {doc['kind']}/{doc['metadata']['name']}", doc)
            for path in sorted(K8S.glob("*.yaml")) if path.name != "kustomization.yaml"
            for doc in _yaml_documents(path)]


def _validate_k8s(manifest: dict[str, Any]) -> str:
    """Check ``manifest`` against the schema of its kind in KUBERNETES_VERSION, strictly (an unknown field is an
    error); returns the Kubernetes version whose schema was used. Raises kubernetes_validate's
    ValidationError (invalid) or SchemaNotFoundError (a kind it has no schema for)."""
    version: str = kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    return version


def _monitor_container() -> dict[str, Any]:
    containers = _k8s("Deployment")["spec"]["template"]["spec"]["containers"]
    [container] = [c for c in containers if c["name"] == "monitor"]
    assert isinstance(container, dict)
    return container


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, rest = pending.strip().partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    return instructions


def _docker_args(name: str) -> list[str]:
    return [args for keyword, args in _dockerfile() if keyword == name]


def _rule_groups() -> list[dict[str, Any]]:
    return [group for path in sorted(RULES_DIR.glob("*.yml")) for group in _yaml(path)["groups"]]


def _rules() -> list[dict[str, Any]]:
    return [rule for group in _rule_groups() for rule in group["rules"]]


def _alerts() -> list[dict[str, Any]]:
    return [rule for rule in _rules() if "alert" in rule]


def _dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        if panel["type"] == "row":
            yield from _panels(panel.get("panels", []))
        else:
            yield panel


def _dashboard_exprs() -> list[tuple[str, str]]:
    """(where, expr) of every panel target and annotation query."""
    dashboard = _dashboard()
    exprs = [(f"panel {p['title']!r}", t["expr"]) for p in _panels(dashboard["panels"]) for t in p["targets"]]
    exprs += [(f"annotation {a['name']!r}", a["expr"]) for a in dashboard["annotations"]["list"] if "expr" in a]
    return exprs


def _image_tag(image: str) -> str:
    name, _, tag = image.rpartition(":")
    return tag if name and "/" not in tag else ""


def _host_port(target: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    return host, int(port)


def _monitor_metrics_port() -> int:
    port: int = _yaml(ROOT / "config" / "monitor.yaml")["metrics"]["port"]
    return port


def _compose_volumes(service: str) -> list[tuple[str | None, str, str]]:
    """(source, container path, mode) of a service's volumes; source None for an anonymous volume."""
    volumes: list[tuple[str | None, str, str]] = []
    for volume in _compose()[service].get("volumes", []):
        parts = volume.split(":")
        if len(parts) == 1:
            volumes.append((None, parts[0], "rw"))
        else:
            volumes.append((parts[0], parts[1], parts[2] if len(parts) > 2 else "rw"))
    return volumes


def _compose_mounts(service: str) -> dict[str, Path]:
    """Container path -> host path of a service's bind mounts (named and anonymous volumes left out)."""
    return {target: (DEPLOY / source).resolve() for source, target, _ in _compose_volumes(service)
            if source is not None and source.startswith((".", "/"))}


def _compose_ports(service: str) -> list[tuple[str | None, int]]:
    """(published host port or range, container port) of a service's ports; None: Docker picks a host port."""
    ports: list[tuple[str | None, int]] = []
    for entry in _compose()[service].get("ports", []):
        if isinstance(entry, dict):
            published = entry.get("published")
            ports.append((str(published) if published not in (None, "") else None, int(entry["target"])))
            continue
        *host, container = str(entry).split("/")[0].split(":")  # [ip:][host:]container[/protocol]
        ports.append(((host[-1] or None) if host else None, int(container)))
    return ports


def _host_path(service: str, container_path: str) -> Path:
    """Where a file a service reads at ``container_path`` comes from, through its bind mounts."""
    for target, source in sorted(_compose_mounts(service).items(), key=lambda item: -len(item[0])):
        if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
            return source / Path(container_path).relative_to(target)
    raise AssertionError(f"compose service {service} mounts nothing at {container_path}")


def _command_flag(service: str, flag: str) -> str:
    for argument in _compose()[service]["command"]:
        if argument.startswith(f"{flag}="):
            return str(argument.split("=", 1)[1])
    raise AssertionError(f"compose service {service} has no {flag}")


# -- running promtool and amtool ---------------------------------------------------------------------------


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not on PATH; install Prometheus' tools: {INSTALL_HINT} "
                    "(Debian/Ubuntu package names; elsewhere the packages are prometheus and alertmanager)")
    return path


def _run(*command: str | Path) -> str:
    result = subprocess.run([str(part) for part in command], capture_output=True, text=True, timeout=120,
                            check=False, cwd=ROOT)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(map(str, command))} failed:\n{output}"
    return output


# -- every file parses -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted([*DEPLOY.rglob("*.yml"), *DEPLOY.rglob("*.yaml")]),
                         ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_file_under_deploy_parses(path: Path) -> None:
    assert _yaml_documents(path), f"{path} is empty"


@pytest.mark.parametrize("path", sorted(DEPLOY.rglob("*.json")), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_json_file_under_deploy_parses(path: Path) -> None:
    assert json.loads(path.read_text())


# -- images ------------------------------------------------------------------------------------------------


def test_compose_images_are_pinned_to_exact_versions() -> None:
    for name, service in _compose().items():
        image = service.get("image")
        assert image or "build" in service, f"compose service {name} has neither image nor build"
        if image is None:
            continue
        tag = _image_tag(image)
        assert tag and tag != "latest", f"compose service {name}: image {image} is not pinned to a tag"
        if "build" not in service:  # a pulled image: an exact release, not a moving one like 3.11 or 12
            assert _EXACT_VERSION_TAG.match(tag), f"compose service {name}: {image} is not an exact version"


def test_dockerfile_base_images_are_pinned_python_311_slim_releases() -> None:
    stages = set()
    for args in _docker_args("FROM"):
        image, *alias = args.split()
        if image not in stages:
            assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", image), f"FROM {image} is not an exact tag"
        if alias:
            stages.add(alias[-1])


def test_kubernetes_images_are_pinned() -> None:
    spec = _k8s("Deployment")["spec"]["template"]["spec"]
    for container in spec.get("initContainers", []) + spec["containers"]:
        tag = _image_tag(container["image"])
        assert tag and tag != "latest", f"container {container['name']}: {container['image']} is not pinned"


def test_the_compose_kafka_image_is_the_kafka_version_the_local_broker_runs() -> None:
    assert _compose()["kafka"]["image"] == f"apache/kafka:{KAFKA_VERSION}"


# -- the Dockerfile ----------------------------------------------------------------------------------------


def test_dockerfile_runs_the_monitor_as_a_non_root_user_with_its_state_in_a_volume() -> None:
    [user] = _docker_args("USER")
    assert user.split(":")[0] not in {"root", "0"}
    assert json.loads(_docker_args("ENTRYPOINT")[-1]) == ["python", "-m", "monitor"]
    assert json.loads(_docker_args("CMD")[-1]) == ["run", "--config", "/etc/monitor/monitor.yaml"]
    assert STATE_DIR in json.loads(_docker_args("VOLUME")[-1])
    assert _docker_args("WORKDIR")[-1] == STATE_DIR  # relative model.path and state.path land in the volume


def test_dockerfile_healthcheck_asks_healthz_on_the_exposed_port_with_urllib() -> None:
    [healthcheck] = _docker_args("HEALTHCHECK")
    [exposed] = _docker_args("EXPOSE")
    _, _, command = healthcheck.partition("CMD ")
    assert json.loads(command)[:2] == ["python", "-c"]  # exec form: no shell needed in the image
    assert "urllib.request" in command
    assert f"http://127.0.0.1:{exposed}/healthz" in command


def test_dockerfile_copies_only_files_that_exist_and_the_build_context_keeps() -> None:
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    assert {".git", ".venv", "models"} <= set(ignored)
    for args in _docker_args("COPY"):
        if args.startswith("--from"):
            continue
        for source in args.split()[:-1]:
            assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
            assert Path(source).parts[0] not in ignored, f"COPY {source}: excluded by .dockerignore"


# -- ports, paths and names agree across files -------------------------------------------------------------


def test_the_metrics_port_is_the_same_in_every_file() -> None:
    container = _monitor_container()
    named = {port["name"]: port["containerPort"] for port in container["ports"]}
    probe_ports = {probe: container[probe]["httpGet"]["port"]
                   for probe in ("startupProbe", "livenessProbe", "readinessProbe") if probe in container}
    [scrape] = [job for job in _yaml(PROMETHEUS_CONFIG)["scrape_configs"] if job["job_name"] == JOB]
    [service_port] = _k8s("Service")["spec"]["ports"]
    ports = {
        "config/monitor.yaml metrics.port": _monitor_metrics_port(),
        "Dockerfile EXPOSE": int(_docker_args("EXPOSE")[0]),
        "k8s containerPort": named["metrics"],
        **{f"k8s {probe}": named.get(port, port) for probe, port in probe_ports.items()},
        "k8s Service port": service_port["port"],
        "k8s Service targetPort": named.get(service_port["targetPort"], service_port["targetPort"]),
        "Prometheus scrape port": scrape["dns_sd_configs"][0]["port"],
        "compose monitor published port": _compose_ports("monitor")[0][1],
    }
    assert len(set(ports.values())) == 1, ports


def test_kubernetes_probes_ask_healthz_for_liveness_and_readyz_for_readiness() -> None:
    container = _monitor_container()
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_prometheus_scrapes_every_compose_monitor_and_alerts_the_compose_alertmanager() -> None:
    config = _yaml(PROMETHEUS_CONFIG)
    services = _compose()
    [scrape] = [job for job in config["scrape_configs"] if job["job_name"] == JOB]
    # One target per replica: Docker's DNS answers a service name with an A record for each of its containers.
    # A static target would be one name, resolved to one of them per scrape connection.
    assert "static_configs" not in scrape
    [discovery] = scrape["dns_sd_configs"]
    assert discovery["names"] == ["monitor"] and discovery["names"][0] in services
    assert discovery["type"] == "A"
    [alertmanager] = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    host, port = _host_port(alertmanager)
    assert host in services and any(mapping.endswith(f":{port}") for mapping in services[host]["ports"])


def test_every_rule_file_is_referenced_by_the_prometheus_config_by_a_relative_path() -> None:
    referenced = _yaml(PROMETHEUS_CONFIG)["rule_files"]
    assert all(not Path(name).is_absolute() for name in referenced)
    assert {(PROMETHEUS_DIR / name).resolve() for name in referenced} == set(RULES_DIR.glob("*.yml"))


def test_every_rule_file_a_promtool_test_loads_exists() -> None:
    for test_file in RULE_TESTS_DIR.glob("*.yml"):
        for name in _yaml(test_file)["rule_files"]:
            assert (test_file.parent / name).is_file(), f"{test_file.name} loads {name}, which does not exist"


def test_compose_bind_mounts_and_build_files_exist_in_the_repository() -> None:
    for name, service in _compose().items():
        for target, source in _compose_mounts(name).items():
            assert source.exists(), f"compose service {name} mounts missing {source} at {target}"
        if "build" in service:
            context = (DEPLOY / service["build"]["context"]).resolve()
            assert context == ROOT
            assert (context / service["build"]["dockerfile"]).resolve() == DOCKERFILE


def test_compose_prometheus_and_alertmanager_load_the_configs_in_deploy() -> None:
    prometheus_config = _host_path("prometheus", _command_flag("prometheus", "--config.file"))
    assert prometheus_config == PROMETHEUS_CONFIG
    # rule_files are relative to the config file, so the rules must be mounted beside it.
    for name in _yaml(PROMETHEUS_CONFIG)["rule_files"]:
        container_path = str(Path(_command_flag("prometheus", "--config.file")).parent / name)
        assert _host_path("prometheus", container_path).is_file()
    alertmanager_config = _host_path("alertmanager", _command_flag("alertmanager", "--config.file"))
    assert alertmanager_config == ALERTMANAGER_CONFIG


def test_compose_monitor_reads_the_repository_config_and_the_compose_kafka() -> None:
    services = _compose()
    config_path = json.loads(_docker_args("CMD")[-1])[-1]
    assert _host_path("monitor", config_path) == ROOT / "config" / "monitor.yaml"
    bootstrap = services["monitor"]["environment"]["MONITOR__KAFKA__BOOTSTRAP_SERVERS"]
    host, port = _host_port(bootstrap)
    assert host == "kafka" and host in services
    assert f"PLAINTEXT://kafka:{port}" in services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert services["monitor"]["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_compose_monitor_scales_with_its_state_in_kafka_and_the_model_volume_read_only() -> None:
    services = _compose()
    monitor = services["monitor"]
    # docker compose up --scale monitor=3: one name per container, and no host port two of them would want.
    assert "container_name" not in monitor
    assert _compose_ports("monitor"), "the monitor publishes no port"
    for published, container in _compose_ports("monitor"):
        low, _, high = (published or "").partition("-")
        assert published is None or (high and int(high) > int(low)), (
            f"monitor publishes container port {container} on the fixed host port {published}: "
            "a second replica could not start")
    environment = {name: str(value) for name, value in monitor["environment"].items()}
    config = load_config(ROOT / "config" / "monitor.yaml", environ=environment)
    assert config.state.store == "kafka"
    # No volume written by two replicas: named volumes read-only, the state dir each container's own.
    volumes = _compose_volumes("monitor")
    for source, target, mode in volumes:
        if source is not None and not source.startswith((".", "/")):
            assert mode == "ro", f"monitor mounts the volume {source} writable at {target}"
    assert (None, STATE_DIR, "rw") in volumes
    # The bundle is the one the model service trains into the volume, at its working directory.
    [(volume, model_mount)] = [(s, t) for s, t, _ in volumes if s in {s for s, _, _ in _compose_volumes("model")}]
    assert (volume, STATE_DIR, "rw") in _compose_volumes("model")
    relative = Path(config.model.path).relative_to(model_mount)
    assert f"--model {relative}" in " ".join(services["model"]["command"])


def test_compose_grafana_provisions_the_datasource_and_the_dashboard_folder() -> None:
    provisioning = _host_path("grafana", "/etc/grafana/provisioning")
    assert provisioning == GRAFANA_PROVISIONING
    [provider] = _yaml(GRAFANA_PROVISIONING / "dashboards" / "dashboards.yml")["providers"]
    assert _host_path("grafana", provider["options"]["path"]) == DASHBOARD.parent
    [datasource] = _yaml(GRAFANA_PROVISIONING / "datasources" / "prometheus.yml")["datasources"]
    assert datasource["type"] == "prometheus"
    url = urlsplit(datasource["url"])
    assert url.hostname in _compose() and f"{url.port}:{url.port}" in _compose()[url.hostname]["ports"]


# -- Kubernetes --------------------------------------------------------------------------------------------


def test_kustomization_lists_every_manifest() -> None:
    listed = set(_yaml(K8S / "kustomization.yaml")["resources"])
    assert listed == {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}


@pytest.mark.parametrize(("where", "manifest"), _k8s_resources(), ids=[where for where, _ in _k8s_resources()])
def test_every_kubernetes_manifest_satisfies_the_kubernetes_schema_of_its_kind(where: str,
                                                                               manifest: dict[str, Any]) -> None:
    kind = (manifest["apiVersion"], manifest["kind"])
    try:
        version, problem = _validate_k8s(manifest), ""
    except kubernetes_validate.SchemaNotFoundError:
        assert kind in CUSTOM_RESOURCES, f"{where}: kubernetes-validate has no schema for {kind}; it is not skipped"
        return
    except kubernetes_validate.ValidationError as error:  # reported below, without jsonschema's schema dump
        version, problem = error.version, f"{'.'.join(map(str, error.path)) or '(top level)'}: {error.message}"
    assert not problem, f"{where} is not a valid {manifest['kind']} of Kubernetes {version}: {problem}"
    # The schemas of that very release, not of an older one kubernetes-validate falls back to.
    assert version == KUBERNETES_VERSION


def test_the_only_kubernetes_manifests_not_checked_against_a_schema_are_the_operators_custom_resources() -> None:
    skipped = set()
    for _, manifest in _k8s_resources():
        try:
            _validate_k8s(manifest)
        except kubernetes_validate.SchemaNotFoundError:
            skipped.add((manifest["apiVersion"], manifest["kind"]))
        except kubernetes_validate.ValidationError:
            pass  # the test above reports it
    assert skipped == CUSTOM_RESOURCES


def _unknown_pod_field(deployment: dict[str, Any]) -> None:
    deployment["spec"]["template"]["spec"]["containers"][0]["volumeMount"] = []


@pytest.mark.parametrize("break_it", [
    pytest.param(lambda d: d["spec"].update(replicas="three"), id="replicas-not-an-integer"),
    pytest.param(lambda d: d["spec"].update(replica=3), id="unknown-field-under-spec"),
    pytest.param(_unknown_pod_field, id="unknown-container-field"),
    pytest.param(lambda d: d["spec"].pop("selector"), id="required-field-missing"),
])
def test_the_kubernetes_schema_check_refuses_a_broken_deployment(break_it: Any) -> None:
    deployment = _k8s("Deployment")
    assert _validate_k8s(deployment) == KUBERNETES_VERSION
    break_it(deployment)
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate_k8s(deployment)


def test_kubernetes_deployment_mounts_the_configmap_and_an_empty_dir_of_its_own_at_the_state_dir() -> None:
    pod = _k8s("Deployment")["spec"]["template"]["spec"]
    container = _monitor_container()
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: volumes[mount["name"]] for mount in container["volumeMounts"]}
    # The windows are in Kafka: the state dir is each pod's own, and no pod waits for another's volume.
    assert "emptyDir" in mounts[STATE_DIR]
    assert not any("persistentVolumeClaim" in volume for volume in pod["volumes"])
    assert not [doc for path in K8S.glob("*.yaml") for doc in _yaml_documents(path)
                if doc["kind"] == "PersistentVolumeClaim"]
    config_path = container["args"][container["args"].index("--config") + 1]
    config_volume = mounts[str(Path(config_path).parent)]
    assert config_volume["configMap"]["name"] == _k8s("ConfigMap")["metadata"]["name"]
    assert Path(config_path).name in _k8s("ConfigMap")["data"]
    assert {"requests", "limits"} <= set(container["resources"])
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_kubernetes_configmap_holds_a_valid_monitor_configuration(tmp_path: Path) -> None:
    path = tmp_path / "monitor.yaml"
    path.write_text(_k8s("ConfigMap")["data"]["monitor.yaml"])
    config = load_config(path, environ={})
    assert config.metrics.port == _monitor_metrics_port()
    assert config.metrics.host == "0.0.0.0"


def test_kubernetes_monitors_keep_their_state_in_kafka(tmp_path: Path) -> None:
    # The replicas share a consumer group: only the Kafka store hands a partition's windows to its next owner.
    path = tmp_path / "monitor.yaml"
    path.write_text(_k8s("ConfigMap")["data"]["monitor.yaml"])
    assert load_config(path, environ={}).state.store == "kafka"


def test_kubernetes_demo_init_container_writes_the_bundle_where_the_monitor_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "monitor.yaml"
    path.write_text(_k8s("ConfigMap")["data"]["monitor.yaml"])
    model_path = load_config(path, environ={}).model.path
    assert not Path(model_path).is_absolute()  # relative to the working directory, the state dir
    pod = _k8s("Deployment")["spec"]["template"]["spec"]
    [init] = [c for c in pod["initContainers"] if c["name"] == "model"]
    script = " ".join(init["args"])
    assert f"test -f {model_path}/bundle.json" in script and f"--model {model_path}" in script
    state_volume = {m["mountPath"]: m["name"] for m in _monitor_container()["volumeMounts"]}[STATE_DIR]
    assert {m["mountPath"]: m["name"] for m in init["volumeMounts"]}[STATE_DIR] == state_volume


def test_kubernetes_deployment_runs_several_replicas_and_rolls_without_losing_one() -> None:
    spec = _k8s("Deployment")["spec"]
    assert spec["replicas"] >= 2
    assert spec["strategy"]["type"] == "RollingUpdate"
    rolling = spec["strategy"]["rollingUpdate"]
    assert rolling["maxUnavailable"] == 0  # a new pod joins the group before an old one leaves
    assert rolling["maxSurge"] not in (0, "0%")  # else, with none unavailable, a rollout could never start


def test_a_pod_disruption_budget_covers_the_deployments_pods() -> None:
    budget = _k8s("PodDisruptionBudget")
    deployment = _k8s("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = budget["spec"]["selector"]
    assert set(selector) == {"matchLabels"} and selector["matchLabels"]
    assert selector["matchLabels"].items() <= pod_labels.items()
    assert budget["spec"]["maxUnavailable"] == 1 and "minAvailable" not in budget["spec"]
    assert deployment["spec"]["replicas"] - budget["spec"]["maxUnavailable"] >= 1


def test_kubernetes_service_is_named_after_the_scrape_job_and_selects_the_pods() -> None:
    service = _k8s("Service")
    pod_labels = _k8s("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["metadata"]["name"] == JOB  # a ServiceMonitor's job label is the Service name
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert _k8s("ServiceMonitor")["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()


def test_the_prometheusrule_groups_are_exactly_the_rule_files_groups() -> None:
    rule = _k8s("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"]["groups"] == _rule_groups()


def test_the_prometheusrule_file_is_what_its_generator_writes() -> None:
    _run(sys.executable, K8S / "make_prometheusrule.py", "--check")


# -- rules -------------------------------------------------------------------------------------------------


def test_every_alert_has_for_severity_summary_description_and_runbook() -> None:
    for alert in _alerts():
        name = alert["alert"]
        assert alert.get("for"), f"{name} has no for:"
        assert alert.get("labels", {}).get("severity") in {"critical", "warning"}, name
        annotations = alert.get("annotations", {})
        for key in ("summary", "description", "runbook"):
            assert annotations.get(key, "").strip(), f"{name} has no {key} annotation"


def test_the_promised_alerts_exist_and_read_their_metrics() -> None:
    exprs: dict[str, str] = {}
    for alert in _alerts():
        exprs[alert["alert"]] = exprs.get(alert["alert"], "") + alert["expr"]
    for name, metrics in REQUIRED_ALERTS.items():
        assert name in exprs, f"no alert {name}"
        for metric in metrics:
            assert re.search(rf"\b{metric}\b", exprs[name]), f"{name} does not read {metric}"


def test_format_drift_counts_windows_and_down_covers_a_missing_target() -> None:
    [drift] = [a for a in _alerts() if a["alert"] == "SequenceMonitorFormatDrift"]
    assert drift["expr"].strip() == "sequence_monitor_window_abnormal_streak >= 2" and drift["for"] == "1m"
    down = " ".join(a["expr"] for a in _alerts() if a["alert"] == "SequenceMonitorDown")
    assert 'up{job="sequence-monitor"} == 0' in down and 'absent(up{job="sequence-monitor"})' in down
    [stale] = [a for a in _alerts() if a["alert"] == "SequenceMonitorCheckpointStale"]
    assert stale["expr"].strip() == "sequence_monitor_checkpoint_age_seconds > 300"


def test_the_weighted_mean_is_recorded_from_sums_not_from_means() -> None:
    recorded = {rule["record"]: " ".join(rule["expr"].split()) for rule in _rules() if "record" in rule}
    for prefix in ("window", "open_window"):
        expr = recorded[f"topic:sequence_monitor_{prefix}_weighted_mean_error:ratio"]
        assert expr.startswith(f"sum by (topic) (sequence_monitor_{prefix}_weighted_error_sum) / "
                               f"(sum by (topic) (sequence_monitor_{prefix}_weight_sum)"), expr


def test_rules_dashboard_and_rule_tests_use_only_exported_metric_names() -> None:
    recorded = {rule["record"] for rule in _rules() if "record" in rule}
    texts = [(f"rule {r.get('alert') or r.get('record')}", r["expr"]) for r in _rules()]
    texts += _dashboard_exprs()
    texts += [(f"{path.name} input", series["series"]) for path in RULE_TESTS_DIR.glob("*.yml")
              for test in _yaml(path)["tests"] for series in test.get("input_series", [])]
    for where, text in texts:
        unknown = set(_METRIC_NAME.findall(_RECORDED_NAME.sub("", text))) - EXPORTED_METRICS
        assert not unknown, f"{where} reads metrics the monitor does not export: {sorted(unknown)}"
        unrecorded = set(_RECORDED_NAME.findall(text)) - recorded
        assert not unrecorded, f"{where} reads series no recording rule writes: {sorted(unrecorded)}"


def test_every_alert_has_rule_tests_where_it_fires_and_where_it_does_not() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for path in RULE_TESTS_DIR.glob("*.yml"):
        for test in _yaml(path)["tests"]:
            for case in test.get("alert_rule_test", []):
                (firing if case.get("exp_alerts") else silent).add(case["alertname"])
    names = {alert["alert"] for alert in _alerts()}
    assert names <= firing, f"alerts never tested firing: {sorted(names - firing)}"
    assert names <= silent, f"alerts never tested silent (exp_alerts: []): {sorted(names - silent)}"


def test_the_rule_tests_cover_every_recording_rule() -> None:
    tested = {case["expr"] for path in RULE_TESTS_DIR.glob("*.yml") for test in _yaml(path)["tests"]
              for case in test.get("promql_expr_test", [])}
    recorded = {rule["record"] for rule in _rules() if "record" in rule}
    untested = {name for name in recorded if not any(name in expr for expr in tested)}
    assert not untested, f"recording rules without a promql_expr_test: {sorted(untested)}"


# -- the dashboard -----------------------------------------------------------------------------------------


def test_every_dashboard_panel_has_a_target_with_an_expr() -> None:
    panels = list(_panels(_dashboard()["panels"]))
    assert panels
    for panel in panels:
        assert panel["targets"], f"panel {panel['title']!r} has no target"
        for target in panel["targets"]:
            assert target.get("expr", "").strip(), f"panel {panel['title']!r} has a target without expr"
    ids = [panel["id"] for panel in _dashboard()["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"


def test_the_dashboard_has_instance_and_topic_variables_that_every_query_uses() -> None:
    variables = {variable["name"]: variable for variable in _dashboard()["templating"]["list"]}
    assert {"instance", "topic"} <= set(variables)
    assert JOB in variables["instance"]["definition"]
    for where, expr in _dashboard_exprs():
        assert "$topic" in expr or "$instance" in expr, f"{where} ignores the topic and instance variables"


def test_the_dashboard_shows_what_the_wall_needs() -> None:
    exprs = " ".join(expr for _, expr in _dashboard_exprs())
    types = {panel["type"] for panel in _panels(_dashboard()["panels"])}
    for needed in ("sequence_monitor_window_weighted_error_sum", "upper_3mad", "lower_3mad",
                   "sequence_monitor_window_zscore", "sequence_monitor_window_verdict",
                   "sequence_monitor_window_above_threshold_ratio", "sequence_monitor_reconstruction_error_bucket",
                   "sequence_monitor_records_total", "sequence_monitor_dead_letters_total",
                   "sequence_monitor_consumer_lag_records", "sequence_monitor_model_info",
                   "sequence_monitor_format_share", "sequence_monitor_new_format_share",
                   "sequence_monitor_format_distance", "sequence_monitor_window_signal",
                   "sequence_monitor_window_p_value", "sequence_monitor_window_outliers"):
        assert needed in exprs, f"no panel shows {needed}"
    assert "heatmap" in types


def test_the_dashboard_shows_why_beside_the_verdict_and_p_values_on_a_log_scale() -> None:
    panels = list(_panels(_dashboard()["panels"]))

    def showing(metric: str) -> dict[str, Any]:
        [panel] = [p for p in panels if any(metric in t["expr"] for t in p["targets"])]
        return panel

    verdict = next(p for p in panels if p["type"] == "state-timeline"
                   and any("sequence_monitor_window_verdict" in t["expr"] for t in p["targets"]))
    signals, p_value = showing("sequence_monitor_window_signal"), showing("sequence_monitor_window_p_value")
    assert signals["type"] == "state-timeline" and "signal" in signals["targets"][0]["legendFormat"]
    assert p_value["fieldConfig"]["defaults"]["custom"]["scaleDistribution"]["type"] == "log"
    for panel in (signals, p_value):  # the next row of panels under the verdict's
        assert panel["gridPos"]["y"] == verdict["gridPos"]["y"] + verdict["gridPos"]["h"], panel["title"]


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    # promtool parses every expression of a rule file: each query becomes one recording rule, with
    # Grafana's variables replaced by values they can take.
    values = {"topic": ".*", "instance": ".*", "__rate_interval": "5m", "__interval": "1m", "__range": "1h"}
    rules = []
    for index, (where, expr) in enumerate(_dashboard_exprs()):
        concrete = re.sub(r"\$\{?(\w+)\}?", lambda m: values[m.group(1)], expr)
        name = re.sub(r"\W+", "_", where).strip("_").lower()  # promtool's error then names the panel
        rules.append({"record": f"dashboard:{name}_{index}:promql", "expr": concrete})
    rules_file = tmp_path / "dashboard_queries.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, width=1000))
    _run(_tool("promtool"), "check", "rules", rules_file)


# -- Prometheus' and Alertmanager's own checks ------------------------------------------------------------


def test_promtool_accepts_the_prometheus_config_and_the_rules_it_loads() -> None:
    _run(_tool("promtool"), "check", "config", PROMETHEUS_CONFIG)


def test_promtool_accepts_every_rule_file_and_the_prometheusrule_groups(tmp_path: Path) -> None:
    groups_file = tmp_path / "prometheusrule_groups.yml"
    groups_file.write_text(yaml.safe_dump({"groups": _k8s("PrometheusRule")["spec"]["groups"]}))
    _run(_tool("promtool"), "check", "rules", *sorted(RULES_DIR.glob("*.yml")), groups_file)


def test_promtool_rule_unit_tests_pass() -> None:
    tests = sorted(RULE_TESTS_DIR.glob("*.yml"))
    assert tests
    _run(_tool("promtool"), "test", "rules", *tests)


def test_amtool_accepts_the_alertmanager_config() -> None:
    _run(_tool("amtool"), "check-config", ALERTMANAGER_CONFIG)


def test_alertmanager_routes_every_alert_severity_to_a_receiver() -> None:
    config = _yaml(ALERTMANAGER_CONFIG)
    receivers = {receiver["name"] for receiver in config["receivers"]}
    routed = {matcher for route in config["route"]["routes"] for matcher in route["matchers"]}
    assert config["route"]["receiver"] in receivers
    for severity in {alert["labels"]["severity"] for alert in _alerts()}:
        assert f'severity="{severity}"' in routed, f"no route for severity {severity}"


def test_the_commented_receiver_examples_are_valid_once_uncommented(tmp_path: Path) -> None:
    head, marker, receivers = ALERTMANAGER_CONFIG.read_text().partition("\nreceivers:\n")
    assert marker
    # Commented YAML is "# " followed by a *_configs key or by indented lines; prose starts with a word.
    example = re.compile(r"^(\s*)# (\w+_configs:.*|\s+\S.*)$")
    uncommented = "\n".join(example.sub(r"\1\2", line) for line in receivers.splitlines())
    assert uncommented != receivers, "found no commented receiver example"
    path = tmp_path / "alertmanager.yml"
    path.write_text(head + marker + uncommented + "\n")
    output = _run(_tool("amtool"), "check-config", path)
    assert "3 receivers" in output


def test_a_missing_promtool_or_amtool_fails_naming_the_packages_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    for tool in ("promtool", "amtool"):
        with pytest.raises(pytest.fail.Exception, match=re.escape(INSTALL_HINT)):
            _tool(tool)
