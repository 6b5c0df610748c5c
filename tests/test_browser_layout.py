"""What a person sees at 1280 px: every option of every segmented control, radio and toggle of the
case study, Cohort and Compare pages is drawn whole (inside its control and the window), and no
toggle label is cut with an ellipsis (issue 42.1: `own`, `head:1` and "Interactive charts" were
hidden at 1400 px). The server fixture of tests/test_browser.py; chromium driven by Playwright."""

import pytest

from tests.test_browser import CHROMIUM, server  # noqa: F401 - the fixture

WIDTH = 1280
PAGES = {"case study": ("/?checkpoint=demo&user=42", "Export for papers"),
         "cohort": ("/cohort?checkpoint=demo&slice=history_length", "Which users"),
         "compare": ("/compare?a=demo-sasrec&b=demo&user=42", "One user under both models")}

# every option of a control with its box, the control's box, and (toggles) the label's widths
MEASURE = """() => {
  const box = e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
  const out = [];
  for (const c of document.querySelectorAll('[data-testid=stButtonGroup], [data-testid=stRadio]')) {
    const opts = c.querySelectorAll('[role=radio], label[data-baseweb=radio]');
    out.push({kind: c.dataset.testid, label: c.innerText.split('\\n')[0], box: box(c),
              options: [...opts].map(o => ({text: o.innerText, box: box(o)}))});
  }
  for (const c of document.querySelectorAll('[data-testid=stCheckbox]')) {
    const label = c.querySelector('[data-testid=stWidgetLabel] [data-testid=stMarkdownContainer]');
    const cut = [label, ...label.querySelectorAll('*')].filter(e => e.scrollWidth > e.clientWidth);
    out.push({kind: 'toggle', label: c.innerText, box: box(c), options: [{text: c.innerText, box: box(label)}],
              cut: cut.map(e => [e.scrollWidth, e.clientWidth])});
  }
  return out;
}"""


@pytest.mark.parametrize("name", PAGES)
def test_every_option_and_toggle_label_is_visible_at_1280_px(server, name):  # noqa: F811
    from playwright.sync_api import sync_playwright

    url, last = PAGES[name]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": 1000})
            page.goto(f"{server}{url}", timeout=60_000)
            page.get_by_text(last).first.wait_for(timeout=180_000)
            page.wait_for_function("() => !document.querySelector('[data-testid=stStatusWidgetRunningIcon]')",
                                   timeout=180_000)
            page.wait_for_timeout(1500)
            controls = page.evaluate(MEASURE)
        finally:
            browser.close()
    assert sum(c["kind"] != "toggle" for c in controls) >= 1, controls
    problems = []
    for c in controls:
        cl, ct, cr, cb = c["box"]
        for o in c["options"]:
            left, top, right, bottom = o["box"]
            if right - left <= 0:
                continue    # a hidden part of a toggle (nothing drawn)
            if left < cl - 1 or right > cr + 1 or top < ct - 1 or bottom > cb + 1 or right > WIDTH or left < 0:
                problems.append((c["kind"], c["label"], o["text"], o["box"], c["box"]))
        if c.get("cut"):
            problems.append((c["kind"], c["label"], "cut", c["cut"]))
    assert not problems, problems
