"""`pip install inbedder` is the engine alone: the stages' dependencies are extras, named when missing."""

import subprocess
import sys
import tomllib

from .conftest import REPO

EXTRAS_ONLY = ("pyspark", "ray", "deltalake", "faiss", "peft", "sklearn", "matplotlib", "scipy", "pandas")
# the same, as the distributions the extras declare (what `require_extra` reads)
EXTRA_DISTRIBUTIONS = ("pyspark", "ray", "deltalake", "faiss-cpu", "peft", "scikit-learn", "matplotlib", "scipy",
                       "pandas", "fastapi", "uvicorn", "psutil", "tenacity")

BLOCK = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {EXTRAS_ONLY!r}:
            raise ModuleNotFoundError(name)
        return None
sys.meta_path.insert(0, Block())
import importlib.util
real = importlib.util.find_spec
importlib.util.find_spec = lambda name, *a: None if name.split('.')[0] in {EXTRAS_ONLY!r} else real(name, *a)
import importlib.metadata as md
real_version = md.version
def version(name):
    if name in {EXTRA_DISTRIBUTIONS!r}:
        raise md.PackageNotFoundError(name)
    return real_version(name)
md.version = version
"""


def test_the_base_install_lists_no_stage_dependency():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    base = " ".join(project["dependencies"]).lower()
    assert not [m for m in ("pyspark", "ray", "deltalake", "faiss", "peft", "scikit-learn", "matplotlib") if m in base]
    extras = project["optional-dependencies"]
    assert {"job", "index", "train", "eval", "serve", "all"} <= set(extras)
    assert "inbedder[job,index,cluster,train,eval,serve]" in extras["all"]


def test_the_engine_and_cli_work_without_any_extra_and_a_stage_names_its_install(tiny_dirs):
    script = BLOCK + f"""
from inbedder import InBedder
m = InBedder.from_pretrained({str(tiny_dirs['llama'])!r})
assert m.encode(['hello there'], 'What is this?').shape == (1, m.dim)
from click.testing import CliRunner
from inbedder.cli import main
r = CliRunner().invoke(main, ['index', '--table', '/t', '--out', '/o'])
print(r.exit_code, r.output.strip())
r = CliRunner().invoke(main, ['embed', '--input', '/t'])
print(r.exit_code, r.output.strip())
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    index_line, embed_line = done.stdout.strip().splitlines()[-2:]
    assert index_line.startswith("1 ") and "pip install 'inbedder[index]'" in index_line
    assert embed_line.startswith("1 ") and "pip install 'inbedder[job]'" in embed_line
