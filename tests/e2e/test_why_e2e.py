"""The Why it works page in real Chromium: run the gradient-flow analysis from the page and see its charts."""
from __future__ import annotations

TIMEOUT_MS = 180_000  # a cold server imports torch and renders the shapes data set on the first visit


def test_gradient_flow_from_the_page(app_server, page):
    page.goto(app_server.url + "/why")
    page.get_by_role("heading", name="Why it works").wait_for(timeout=TIMEOUT_MS)
    # Residual nets only (the default depths 20, 56, 110): three nets, a few seconds on a CPU.
    page.get_by_text("Estimated ", exact=False).first.wait_for(timeout=TIMEOUT_MS)  # the first run is over
    page.get_by_role("radiogroup", name="Nets").first.get_by_text("residual", exact=True).click(timeout=TIMEOUT_MS)
    estimate = page.get_by_text("Estimated ", exact=False).first
    page.wait_for_function("() => [...document.querySelectorAll('p')].some(p => p.innerText.startsWith('Estimated ')"
                           " && !p.innerText.includes('plain-'))", timeout=TIMEOUT_MS)
    assert "resnet-110" in estimate.inner_text()
    page.get_by_role("button", name="Start").first.click()

    charts = page.locator('[data-testid="stPlotlyChart"] .js-plotly-plot')
    charts.nth(1).wait_for(timeout=TIMEOUT_MS)
    page.wait_for_function(  # Plotly has laid the figure out (``_fullData`` exists)
        "() => { const g = document.querySelector('.js-plotly-plot'); return g && g._fullData && g._fullData.length > 0; }",
        timeout=TIMEOUT_MS)
    # Points per curve of the first chart, the gradient norm by block. Plotly 6 ships arrays binary-encoded,
    # so the decoded lengths come from the laid-out traces, not from the JSON.
    lengths = page.evaluate(
        "() => document.querySelector('.js-plotly-plot')._fullData.map(t => [t.name, t._length])")
    assert sorted(map(tuple, lengths)) == [("resnet-110", 54), ("resnet-20", 9), ("resnet-56", 27)]
    title = page.evaluate("() => document.querySelector('.js-plotly-plot').layout.title.text")
    assert title.startswith("Gradient reaching each block's input")
    # The ratio-by-depth chart: the residual ratio through the three depths, per element and raw (found by its title: the
    # page draws per-element and energy-share charts beside it).
    ratio = page.evaluate(
        "() => [...document.querySelectorAll('.js-plotly-plot')]"
        ".filter(g => (g.layout.title.text || '').startsWith('Gradient at the input over gradient at the output'))"
        ".map(g => g._fullData.map(t => [t.name, t._length]))")
    assert [sorted(tuple(r) for r in chart) for chart in ratio] == [[("residual, per element", 3), ("residual, raw norms", 3)]]
    assert page.get_by_role("button", name="Cancel").count() == 0  # the job finished, its controls are gone
    assert page.locator('[data-testid="stException"]').count() == 0
