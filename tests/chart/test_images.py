"""The bundled PostgreSQL image's recipe (harness/images.py) and its Dockerfile agree, and it runs as
the non-root user the chart's StatefulSet declares."""

from __future__ import annotations

import yaml

from harness import config, dockerfiles, images
from tests.chart.helm import CHART, one, template


def test_the_postgres_dockerfile_matches_its_recipe() -> None:
    recipe = images.POSTGRES_RECIPE
    committed = (config.REPO / recipe.dockerfile).read_text()
    assert committed == dockerfiles.render_postgres(recipe), (
        f"{recipe.dockerfile} is out of date: run `python -m harness.dockerfiles`"
    )


def test_the_chart_runs_the_postgres_image_as_its_user() -> None:
    recipe = images.POSTGRES_RECIPE
    cfg = recipe.config()
    assert cfg.user == "999:999" and cfg.entrypoint == ["/usr/local/bin/cairn-postgres"]
    assert recipe.packages() == ["postgresql-15"]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert f"{values['postgresql']['image']['repository']}:{values['postgresql']['image']['tag']}" == images.POSTGRES
    pod = one(template(), "StatefulSet", "cairn-postgresql")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == recipe.uid and pod["securityContext"]["fsGroup"] == recipe.uid
    mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert recipe.data_dir in mounts and "/tmp" in mounts
    passwd = (config.REPO / recipe.src / "passwd").read_text()
    assert f"postgres:x:{recipe.uid}:{recipe.uid}:" in passwd
