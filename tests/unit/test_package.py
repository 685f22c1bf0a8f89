import subprocess
import sys

from tests.conftest import ROOT


def test_core_never_imports_streamlit():
    code = ("import sys, resnet_core, resnet_core.cli, resnet_core.training.loop, resnet_core.training.runs, resnet_core.training.evaluate; "
            "import importlib.util as u; [__import__(m) for m in ('resnet_core.attribution',) if u.find_spec(m)]; "
            "print('streamlit' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
