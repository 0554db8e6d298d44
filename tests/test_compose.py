"""docker-compose.yml, checked statically (no Docker engine runs in CI).

Structure, images, ports and profiles; every bind-mounted path exists in the repository and
lands where the mounted configuration expects it (Prometheus rule_files, Alertmanager
templates, Grafana provisioning); the services reach each other by the names the configs use;
the embedded agentwatch config passes agentwatch's own validation; the default `up` runs a
live workload; every long-running service has a healthcheck; every image is pinned.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from agentwatch.config import DEFAULT_PORT, read_config_file

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yml"
CORE = {
    "agentwatch-init",
    "agentwatch",
    "agentwatch-demo",
    "prometheus",
    "alertmanager",
    "grafana",
    "alert-webhook",
}
#: The oldest Docker Compose that reads the file: `configs.content` arrived in v2.23.1.
MIN_COMPOSE = "v2.23.1"


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return loaded


def _services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = _compose()["services"]
    return services


def _bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    mounts = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts.append((source, target))
    return mounts


def _mount_target(service: str, source: str) -> PurePosixPath:
    for src, target in _bind_mounts(_services()[service]):
        if src == source:
            return PurePosixPath(target)
    raise AssertionError(f"{service} does not mount {source}")


def test_compose_has_the_stack_and_an_optional_postgres_profile() -> None:
    services = _services()
    assert set(services) == CORE | {"postgres"}
    for name in CORE:
        assert "profiles" not in services[name], f"{name} must start by default"
    assert services["postgres"]["profiles"] == ["postgres"]
    postgres_dependency = services["agentwatch-init"]["depends_on"]["postgres"]
    assert postgres_dependency == {"condition": "service_healthy", "required": False}


def test_the_minimum_compose_version_is_documented() -> None:
    header = COMPOSE.read_text(encoding="utf-8").split("\nname:")[0]
    assert f"Docker Compose {MIN_COMPOSE}" in header
    assert "content" in _compose()["configs"]["agentwatch-config"]  # the v2.23.1 feature
    for doc in ("README.md", "docs/existing-stack.md"):
        assert f"Compose {MIN_COMPOSE}" in (REPO / doc).read_text(encoding="utf-8"), doc


def test_default_up_runs_a_live_workload_into_the_served_store() -> None:
    services = _services()
    demo, serve = services["agentwatch-demo"], services["agentwatch"]
    script = " ".join(demo["command"])
    assert "while true" in script and "agentwatch demo" in script and "--no-serve" in script
    assert "sleep" in script and "--seed=" in script  # a new workload every interval
    assert demo["restart"] == "unless-stopped"
    assert (
        demo["environment"]["AGENTWATCH_STORE_URL"] == serve["environment"]["AGENTWATCH_STORE_URL"]
    )
    assert demo["volumes"] == serve["volumes"]
    # Compose interpolates $VAR itself: the loop's shell variables must be escaped as $$.
    assert re.findall(r"(?<!\$)\$(?![$])", script.replace("$$", "")) == []


def test_the_store_is_created_once_before_its_reader_and_writer_start() -> None:
    services = _services()
    assert services["agentwatch-init"]["command"][:2] == ["agentwatch", "init"]
    assert services["agentwatch-init"]["restart"] == "no"
    for name in ("agentwatch", "agentwatch-demo"):
        assert services[name]["depends_on"]["agentwatch-init"] == {
            "condition": "service_completed_successfully"
        }


def test_every_bind_mounted_path_exists_in_the_repository() -> None:
    mounts = [m for s in _services().values() for m in _bind_mounts(s)]
    assert len(mounts) >= 6
    for source, _ in mounts:
        assert (REPO / source).exists(), f"{source} is mounted but missing"


def test_named_volumes_are_declared() -> None:
    declared = set(_compose()["volumes"])
    for name, service in _services().items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name}: volume {source} not declared"


PINNED = re.compile(r"^[\w./-]+:v?\d+\.\d+(\.\d+)?[\w.-]*(@sha256:[0-9a-f]{64})?$")


def test_every_image_is_pinned_to_a_release() -> None:
    images = {name: service["image"] for name, service in _services().items()}
    build = _services()["agentwatch"]["build"]["dockerfile_inline"]
    images["agentwatch (FROM)"] = re.search(r"^FROM (\S+)", build, re.M).group(1)
    for name, image in images.items():
        if image == "agentwatch:local":  # built here from the FROM above
            continue
        assert PINNED.match(image), f"{name}: pin {image} to a release (x.y.z)"
        assert "latest" not in image, name


def test_ports_are_published_on_localhost_only() -> None:
    published = {}
    for name, service in _services().items():
        for port in service.get("ports", []):
            host, host_port, container_port = _port(port)
            assert host == "127.0.0.1", f"{name} publishes {port} on every interface"
            published[name] = (host_port, int(container_port))
    assert published["agentwatch"] == (str(DEFAULT_PORT), DEFAULT_PORT)
    assert published["prometheus"] == ("9090", 9090)
    assert published["alertmanager"] == ("9093", 9093)
    assert published["grafana"] == ("3000", 3000)


def _port(spec: str) -> tuple[str, str, str]:
    """host, host port (maybe `${VAR:-default}`), container port of a `ports:` entry."""
    match = re.fullmatch(r"([^:]+):(\$\{[^}]+\}|\d+):(\d+)", spec)
    assert match, f"unexpected port spec {spec!r}"
    return match.group(1), match.group(2), match.group(3)


def test_postgres_does_not_take_the_hosts_5432() -> None:
    (port,) = _services()["postgres"]["ports"]
    host, host_port, container_port = _port(port)
    assert host == "127.0.0.1" and container_port == "5432"
    match = re.fullmatch(r"\$\{AGENTWATCH_POSTGRES_PORT:-(\d+)\}", host_port)
    assert match and int(match.group(1)) != 5432, port


def test_agentwatch_serves_on_the_port_prometheus_scrapes() -> None:
    service = _services()["agentwatch"]
    command = service["command"]
    assert command[:2] == ["agentwatch", "serve"]
    assert f"--port={DEFAULT_PORT}" in command and "--host=0.0.0.0" in command
    prometheus = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())
    job = next(j for j in prometheus["scrape_configs"] if j["job_name"] == "agentwatch")
    assert job["static_configs"][0]["targets"] == [f"agentwatch:{DEFAULT_PORT}"]
    alertmanagers = prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert alertmanagers == ["alertmanager:9093"]


def test_prometheus_finds_its_rules_where_they_are_mounted() -> None:
    service = _services()["prometheus"]
    config_target = _mount_target("prometheus", "./prometheus/prometheus.yml")
    assert f"--config.file={config_target}" in service["command"]
    rules_target = _mount_target("prometheus", "./prometheus/rules")
    prometheus = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())
    for pattern in prometheus["rule_files"]:
        resolved = config_target.parent / pattern
        assert resolved.parent == rules_target, f"{pattern} is not under the mounted rules"
        assert list((REPO / "prometheus").glob(pattern)), f"{pattern} matches no file"


def test_alertmanager_finds_its_templates_where_they_are_mounted() -> None:
    service = _services()["alertmanager"]
    config_target = _mount_target("alertmanager", "./alertmanager/alertmanager.yml")
    assert f"--config.file={config_target}" in service["command"]
    templates_target = _mount_target("alertmanager", "./alertmanager/templates")
    config = yaml.safe_load((REPO / "alertmanager" / "alertmanager.yml").read_text())
    for pattern in config["templates"]:
        assert (config_target.parent / pattern).parent == templates_target
    hosts = {
        re.sub(r"^https?://([^:/]+).*$", r"\1", hook["url"])
        for receiver in config["receivers"]
        for hook in receiver.get("webhook_configs", [])
    }
    assert hosts == {"alert-webhook"} and "alert-webhook" in _services()


def test_grafana_provisions_the_datasource_and_dashboards_on_first_start() -> None:
    service = _services()["grafana"]
    assert _mount_target("grafana", "./grafana/provisioning") == PurePosixPath(
        "/etc/grafana/provisioning"
    )
    dashboards_target = _mount_target("grafana", "./grafana/dashboards")
    provider = yaml.safe_load(
        (REPO / "grafana" / "provisioning" / "dashboards" / "agentwatch.yaml").read_text()
    )["providers"][0]
    assert PurePosixPath(provider["options"]["path"]) == dashboards_target
    home = PurePosixPath(service["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert home.parent == dashboards_target
    assert (REPO / "grafana" / "dashboards" / home.name).exists()
    datasource = yaml.safe_load(
        (REPO / "grafana" / "provisioning" / "datasources" / "prometheus.yaml").read_text()
    )["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090"


def test_agentwatch_image_build_copies_existing_files() -> None:
    build = _services()["agentwatch"]["build"]
    assert build["context"] == "."
    assert "agentwatch" not in _services()["agentwatch"].get("profiles", [])
    for line in build["dockerfile_inline"].splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (REPO / source).exists(), f"COPY {source}: missing"


def test_embedded_agentwatch_config_is_valid(tmp_path: Path) -> None:
    content = _compose()["configs"]["agentwatch-config"]["content"]
    path = tmp_path / "config.yaml"
    path.write_text(content)
    settings = read_config_file(path)
    assert [b.name for b in settings["budgets"]] == ["monthly-total", "daily-total"]
    target = _services()["agentwatch"]["configs"][0]["target"]
    assert f"--config={target}" in _services()["agentwatch"]["command"]
    assert f"--config={target}" in " ".join(_services()["agentwatch-demo"]["command"])


#: Healthcheck of each long-running service: the port it listens on and its readiness path.
READY = {
    "agentwatch": (DEFAULT_PORT, "/readyz"),
    "prometheus": (9090, "/-/ready"),
    "alertmanager": (9093, "/-/ready"),
    "grafana": (3000, "/api/health"),
}


@pytest.mark.parametrize("name", [*READY, "postgres"])
def test_services_have_healthchecks_on_their_own_readiness_endpoint(name: str) -> None:
    check = _services()[name]["healthcheck"]
    test = " ".join(check["test"])
    if name in READY:
        port, path = READY[name]
        assert f"http://127.0.0.1:{port}{path}" in test, test
        published = _services()[name]["ports"][0].split(":")[-1]
        assert int(published) == port
    else:
        assert "pg_isready" in test
    assert check["interval"] and check["retries"] >= 3


def test_dependants_wait_for_healthy_services() -> None:
    services = _services()
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"
    assert services["prometheus"]["depends_on"]["alertmanager"]["condition"] == "service_healthy"


def test_prometheus_keeps_exemplars_for_the_grafana_links() -> None:
    assert "--enable-feature=exemplar-storage" in _services()["prometheus"]["command"]
