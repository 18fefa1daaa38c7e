"""review.html in headless Chromium: the queue shown, decisions made, kept, saved, merged.

Marked `browser`: run with `pytest -m browser` where Debian's `chromium` is installed (`.ci/run`
installs it); skipped, with the reason, where it is not.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import pytest
from catalogue_tables import blank_cells, copy_collection, differences, read_rows
from chromium import CHROMIUM, Browser
from conftest import Sweep, assert_ok, run_script

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium: apt-get install -y chromium"),
]


@pytest.fixture(scope="module")
def enrichment(all_tasks_sweep: Sweep, demo_dir: Path, tmp_path_factory) -> Path:
    """`enrich.py` on a demo copy with blanked cells, as a user runs it; its folder."""
    collection = copy_collection(demo_dir, tmp_path_factory.mktemp("page") / "museum")
    blank_cells(collection / "annotations.csv")
    folder = collection.parent / "enrichment"
    process = run_script(
        "enrich.py",
        f"data.root={collection}",
        f"pipeline.from_sweep={all_tasks_sweep.path}",
        f"hydra.run.dir={folder}",
        "explain=true",
        "num_workers=0",
        "accelerator=cpu",
        "facts_file=null",
    )
    assert_ok(process)
    assert "images/s" in process.stderr + process.stdout
    return folder


def wait_for_file(path: Path, timeout: float = 20) -> Path:
    """`path` once a download has written it whole."""
    deadline = time.monotonic() + timeout
    while not path.is_file() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert path.is_file(), f"nothing saved as {path}"
    time.sleep(0.5)  # the download's last write
    return path


def test_a_curator_reviews_in_the_page_and_the_saved_review_merges(enrichment: Path, tmp_path):
    _, queued = read_rows(enrichment / "review.csv")
    downloads = tmp_path / "downloads"
    browser = Browser(tmp_path / "profile", downloads)
    try:
        browser.open((enrichment / "review.html").as_uri())
        shown = browser.evaluate(
            "[...document.querySelectorAll('tr.item')].filter(r => r.offsetParent).map("
            "r => r.dataset.id)"
        )
        assert shown == [f"{row['line']}:{row['field']}" for row in queued]
        assert browser.evaluate("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
        assert browser.evaluate("document.images.length") > len(queued)  # heat maps too
        ids = shown[:3]
        other = next(c for c in queued[1]["classes"].split("|") if c != queued[1]["predicted"])
        browser.click(f'tr[data-id="{ids[0]}"] input[value=accept]')
        browser.evaluate(
            f"(() => {{ const s = document.querySelector('tr[data-id=\"{ids[1]}\"] select');"
            f" s.value = '{other}'; s.dispatchEvent(new Event('change')); }})()"
        )
        browser.click(f'tr[data-id="{ids[2]}"] input[value=reject]')
        browser.reload()  # decisions survive in the browser's local storage
        checked = browser.evaluate(
            "[...document.querySelectorAll('tr.item')].map(r => "
            "(r.querySelector('input:checked') || {}).value || '')"
        )
        assert checked[:4] == ["accept", "correct", "reject", ""]
        browser.evaluate(
            "document.getElementById('filter-field').value = 'artwork_type';"
            "document.getElementById('filters').dispatchEvent(new Event('input'))"
        )
        visible = browser.evaluate(
            "[...document.querySelectorAll('tr.item')].filter(r => r.offsetParent).length"
        )
        assert visible == sum(row["field"] == "artwork_type" for row in queued)
        browser.click("#save")
        saved = wait_for_file(downloads / "review.csv")
        assert browser.errors() == []
    finally:
        browser.close()
    with saved.open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert reader.fieldnames == list(queued[0].keys())
    assert [(r["decision"], r["corrected_label"]) for r in rows[:4]] == [
        ("accept", ""),
        ("correct", other),
        ("reject", ""),
        ("", ""),
    ]
    table = enrichment.parent / "museum" / "annotations.csv"
    before = table.read_bytes()
    merge = [
        "enrich.py",
        "mode=merge",
        f"review={saved}",
        f"enrichment={enrichment}",
        f"hydra.run.dir={tmp_path / 'merge'}",
    ]
    assert_ok(run_script(*merge))
    backup = next(table.parent.glob("annotations.*.bak.csv"))
    assert backup.read_bytes() == before
    changed = {(line, column) for line, column, old, _ in differences(backup, table) if not old}
    first, second = queued[0], queued[1]
    assert (int(first["line"]), first["field"]) in changed
    assert (int(second["line"]), second["field"]) in changed
    assert len([c for c in changed if not c[1].endswith("_source")]) == 2
    after = table.read_bytes()
    assert_ok(run_script(*merge))
    assert table.read_bytes() == after, "a second merge of the same review changes nothing"
