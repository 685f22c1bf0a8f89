"""The papers' and the community checkpoints' published CIFAR-10 errors, checked against the values
their sources state (transcribed here with where they stand), and matched to runs."""
from __future__ import annotations

import re

import pytest

from resnet_core.experiments import published as pub
from resnet_core.config import ModelConfig
from resnet_core.nets.models import build_model, count_params
from tests.conftest import WEIGHTS

# He et al. 2015, Table 6, "ResNet" rows: (layers, params, error %); 110: "6.43 (6.61±0.16)".
TABLE6_TEXT = """20 0.27M 8.75
32 0.46M 7.51
44 0.66M 7.17
56 0.85M 6.97
110 1.7M 6.43
1202 19.4M 7.93"""
# akamaster/pytorch_resnet_cifar10 README, "Test err(this impl.)".
AKAMASTER_TEXT = "ResNet20 8.27% ResNet32 7.37% ResNet44 6.90% ResNet56 6.61% ResNet110 6.32% ResNet1202 6.18%"


def test_table6_is_the_papers():
    rows = [line.split() for line in TABLE6_TEXT.splitlines()]
    assert {int(d): float(e) for d, _, e in rows} == {d: f.error for d, f in pub.PAPER_TABLE6.items()}
    assert {int(d): float(p[:-1]) for d, p, _ in rows} == pub.PAPER_TABLE6_PARAMS_M
    assert "6.61 ± 0.16" in pub.PAPER_TABLE6[110].note
    assert all("Table 6" in f.source and "1512.03385" in f.source for f in pub.PAPER_TABLE6.values())


def test_community_errors_are_the_readmes():
    stated = {int(d): float(e) for d, e in re.findall(r"ResNet(\d+) ([\d.]+)%", AKAMASTER_TEXT)}
    assert stated == {d: f.error for d, f in pub.COMMUNITY.items()}
    assert all("akamaster/pytorch_resnet_cifar10" in f.source for f in pub.COMMUNITY.values())


def test_community_errors_agree_with_the_reference_readme_when_at_hand():
    readme = WEIGHTS / "README.md"
    if not readme.is_file():
        pytest.skip("the reference checkpoints' README is not on this machine")
    text = " ".join(readme.read_text().split())
    for depth in (20, 32, 44, 56):
        assert f"ResNet-{depth} {pub.COMMUNITY[depth].error:.2f}%" in text


def test_fig6_plain_nets_carry_no_invented_number():
    assert set(pub.PAPER_FIG6_PLAIN) == {20, 32, 44, 56}
    for f in pub.PAPER_FIG6_PLAIN.values():
        assert f.error is None and "Fig. 6" in f.source and "higher training error" in f.note
        assert f.text().startswith("not stated")


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110])
def test_params_match_table6(depth):
    assert round(count_params(build_model(ModelConfig(depth=depth))) / 1e6, 2) == pytest.approx(
        pub.PAPER_TABLE6_PARAMS_M[depth], abs=0.006 if depth < 110 else 0.06)


def _run(depth=56, residual=True, data="cifar10", size=32, **model):
    return {"model": {**ModelConfig(depth=depth, residual=residual, **model).to_dict()},
            "data": {"name": data, "image_size": size}}


def test_paper_reference_only_for_the_papers_experiment():
    assert pub.paper_reference(_run()).error == 6.97
    assert pub.paper_reference(_run(110)).error == 6.43
    assert pub.paper_reference(_run(20, residual=False)).error is None      # Fig. 6: drawn, not stated
    assert pub.paper_reference(_run(data="synthetic")) is None
    assert pub.paper_reference(_run(size=16)) is None
    assert pub.paper_reference(_run(width=0.5)) is None
    assert pub.paper_reference(_run(shortcut="B")) is None
    assert pub.paper_reference(_run(preact=True)) is None
    assert pub.paper_reference(_run(depth=8)) is None


def test_reference_line_says_how_far_the_run_trained():
    line = pub.reference_line(_run(), 7.2, steps=64_000)
    assert line == "7.20% test error; paper: 6.97% (He et al. 2015, Table 6)"
    short = pub.reference_line(_run(), 12.0, steps=2_000)
    assert short.endswith("this run trained 2,000 of the paper's 64,000 steps")
    assert pub.reference_line(_run(data="synthetic"), 7.2) is None


def test_readme_tables_use_the_published_figures():
    from pathlib import Path

    from resnet_core.nets.community import CATALOGUE

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for depth, paper in pub.PAPER_TABLE6.items():
        row = next(line for line in readme.splitlines() if line.startswith(f"| ResNet-{depth} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1].startswith(f"{paper.error:.2f}%") and cells[3] == f"{pub.COMMUNITY[depth].error:.2f}%"
        c = CATALOGUE[f"cifar10:resnet{depth}"]
        row = next(line for line in readme.splitlines() if line.startswith(f"| `{c.name}` |"))
        cells = [x.strip() for x in row.strip("|").split("|")]
        paper_cell = f"{paper.error:.2f}%" + (f" ({paper.note})" if paper.note else "")
        assert cells[1:] == [f"`{c.file}`", c.size_text(), f"{pub.PAPER_TABLE6_PARAMS_M[depth]:g}M",
                             f"{c.published.error:.2f}%", paper_cell]
