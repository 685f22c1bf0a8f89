"""The analysis registry: every analysis module is imported by name, so a missing one fails loudly."""
import subprocess
import sys

from resnet_core.analysis import ANALYSES

# landscape.py registers two analyses: the 1-D init -> trained interpolation and the 2-D surface.
EXPECTED = {"gradient-flow", "shattering", "paths", "lesion", "interpolate", "landscape", "responses"}


def test_registry_holds_exactly_the_expected_analyses():
    """Catches a deleted or renamed analysis module (its analysis vanishes) and a stray registration."""
    assert set(ANALYSES) == EXPECTED
    assert all(a.name == name for name, a in ANALYSES.items())


def test_a_missing_analysis_module_fails_the_import_instead_of_dropping_the_analysis():
    """Catches a registry that swallows ModuleNotFoundError, which turns a deleted module's page
    tests into skips instead of failures."""
    code = ("import sys; sys.modules['resnet_core.analysis.lesion'] = None\n"
            "try:\n    import resnet_core.analysis\n"
            "except ModuleNotFoundError as e:\n    print('failed:', e.name)\n"
            "else:\n    print('imported without lesion')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "failed: resnet_core.analysis.lesion", out.stdout + out.stderr
