from __future__ import annotations

import json
import subprocess
import sys

import pytest


def test_package_names_resolve_to_their_modules_objects():
    import inbedder.job as job
    import inbedder.lake as lake
    from inbedder.job.run import run_job
    from inbedder.lake.delta_output import DeltaOutput
    from inbedder.lake.staging import write_staged_files

    assert job.run_job is run_job
    assert lake.DeltaOutput is DeltaOutput and lake.write_staged_files is write_staged_files
    assert "run_job" in job.__all__ and "write_staged_files" in lake.__all__
    assert all(getattr(lake, name) is not None for name in lake.__all__)
    assert all(getattr(job, name) is not None for name in job.__all__)


def test_an_unknown_name_is_an_attribute_error():
    import inbedder.lake as lake

    with pytest.raises(AttributeError, match="has no attribute 'nothing_here'"):
        lake.nothing_here  # noqa: B018


def test_a_spark_worker_running_a_wave_imports_neither_the_commit_path_nor_the_driver():
    """What unpickling a wave's task function imports in a fresh worker process."""
    probe = ("import json, sys; import inbedder.job.waves; "
             "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
             "('inbedder', 'pandas', 'deltalake', 'pydantic', 'torch'))))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                       check=True).stdout)
    assert "inbedder.job.waves" in loaded and "inbedder.lake.staging" in loaded
    for heavy in ("inbedder.job.run", "inbedder.lake.delta_output", "inbedder.job.settings", "pandas", "deltalake",
                  "pydantic", "torch"):
        assert heavy not in loaded, heavy


def test_dir_lists_the_lazy_names_before_they_are_imported():
    """Tab completion and `help()` see a package's names without importing their modules."""
    probe = ("import json, sys, inbedder, inbedder.lake; "
             "print(json.dumps([dir(inbedder.lake), dir(inbedder), 'inbedder.lake.delta_output' in sys.modules, "
             "'torch' in sys.modules]))")
    lake_names, top_names, commit_loaded, torch_loaded = json.loads(
        subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout)
    assert {"DeltaOutput", "open_snapshot", "write_staged_files", "__doc__"} <= set(lake_names)
    assert {"InBedder", "Embeddings", "__version__"} <= set(top_names)
    assert not commit_loaded and not torch_loaded
