"""infra/terraform: formatted, initialises offline against the plugin mirror, validates, passes its tests."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import REPO

TERRAFORM = shutil.which("terraform")
pytestmark = pytest.mark.skipif(TERRAFORM is None, reason="terraform is not installed on this machine")


def plugin_mirror() -> Path:
    """The folder holding registry.terraform.io (TF_PLUGIN_MIRROR, else the known locations)."""
    candidates = [os.environ.get("TF_PLUGIN_MIRROR"), "/opt/tf-plugins", str(Path.home() / ".terraform.d/plugins")]
    for c in filter(None, candidates):
        if (Path(c) / "registry.terraform.io").is_dir():
            return Path(c)
    pytest.fail("no Terraform plugin mirror with registry.terraform.io found: set TF_PLUGIN_MIRROR")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A copy of the module, initialised from the mirror, so the repo gets no .terraform folder."""
    copy = tmp_path_factory.mktemp("tf") / "terraform"
    shutil.copytree(REPO / "infra" / "terraform", copy, ignore=shutil.ignore_patterns(".terraform", "*.tfstate*"))
    _tf(copy, "init", "-backend=false", "-input=false", f"-plugin-dir={plugin_mirror()}")
    return copy


def _tf(cwd: Path, *args: str) -> str:
    result = subprocess.run([TERRAFORM, *args, "-no-color"], cwd=cwd, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"})
    assert result.returncode == 0, f"terraform {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_formatted():
    _tf(REPO / "infra" / "terraform", "fmt", "-check", "-recursive")


def test_validates(workdir):
    assert "The configuration is valid" in _tf(workdir, "validate")


def test_security_properties_hold_under_a_mock_provider(workdir):
    out = _tf(workdir, "test")
    assert "6 passed, 0 failed" in out
    for run in ("ray_and_spark_ports_are_reachable_only_inside_the_vpc",
                "the_lake_is_encrypted_versioned_and_never_public",
                "managed_airflow_is_private", "an_open_vpc_range_is_refused"):
        assert f'run "{run}"... pass' in out
