"""One error root: every stage's error is an InBedderError, and a missing optional part names its install."""

import pytest
from click.testing import CliRunner

from inbedder import errors
from inbedder.cli import main


def test_every_error_the_product_raises_shares_one_root():
    kinds = [errors.ConfigError, errors.ModelLoadError, errors.InvalidInputError, errors.TableError, errors.JobError,
             errors.LocalClusterError, errors.IndexBuildError, errors.ClusterError, errors.TrainingError,
             errors.MissingExtraError]
    assert all(issubclass(k, errors.InBedderError) for k in kinds)
    from inbedder.engine import InBedderError, ModelLoadError

    assert InBedderError is errors.InBedderError and ModelLoadError is errors.ModelLoadError


def test_a_missing_extra_is_named_with_its_pip_install(monkeypatch):
    """The check reads the extras pyproject.toml declares: the package that is missing is the one named."""
    import importlib.metadata

    real = importlib.metadata.version

    def version(name):
        if name == "faiss-cpu":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    assert errors.missing_from_extra("index") == ["faiss-cpu"] and errors.missing_from_extra("train") == []
    with pytest.raises(errors.MissingExtraError, match=r"faiss-cpu, part of the \[index\] extra: pip install "
                                                        r"'inbedder\[index\]'"):
        errors.require_extra("index")
    result = CliRunner().invoke(main, ["index", "--table", "/t", "--out", "/o"])
    assert result.exit_code == 1 and result.output.strip().count("\n") == 0
    assert "inbedder[index]" in result.output and "Traceback" not in result.output


def test_validation_problems_name_each_field_and_a_whole_config_check_plainly():
    from pydantic import ValidationError

    from inbedder.errors import validation_problems
    from inbedder.training.trainer import TrainConfig

    with pytest.raises(ValidationError) as bad_field:
        TrainConfig(train="x", out="y", lr=-1)
    assert validation_problems(bad_field.value) == "lr: Input should be greater than 0"
    with pytest.raises(ValidationError) as bad_whole:
        TrainConfig(train="x", out="y", contrastive_weight=1.0, contrastive_coarse_merge=True)
    assert validation_problems(bad_whole.value) == ("contrastive_coarse_merge needs contrastive_weight > 0 and "
                                                    "contrastive_hard_pairs: true")
