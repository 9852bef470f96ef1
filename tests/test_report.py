"""``deephash report``: report.html (self-contained) and report.md from finished runs, and
the page in a real browser (headless Chromium, network blocked)."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deephash.cli import main
from tests.conftest import NO_CHROMIUM, tiny_run_args

ARTEFACTS = Path(__file__).resolve().parents[1] / "test-artefacts"


class Page(HTMLParser):
    """The page's images, links, section ids, table rows and gallery thumbnails."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str]] = []
        self.links: list[str] = []
        self.sections: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        self.tags.add(tag)
        if tag == "img":
            self.images.append(found)
        if "href" in found:
            self.links.append(found["href"])
        if tag == "section":
            self.sections.append(found.get("id", ""))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A baseline, a trained embedding and 16-bit codes of the tiny folder."""
    from tests.conftest import make_image_folder

    root = tmp_path_factory.mktemp("report")
    data = make_image_folder(root / "data", n_classes=3, n_train=12, n_test=4)
    args = tiny_run_args(data, root / "cache", epochs=2)
    base, out = args[:8], root / "runs"  # data, cache, image size, workers
    assert main(["baseline", *base, "--tsne-points", "30", "--out", str(out / "frozen")]) == 0
    assert main(["train", *args, "--embedding-dim", "8", "--out", str(out / "trained")]) == 0
    assert main(["hash", *args, "--bits", "8", "16", "--out", str(out / "codes")]) == 0
    return root


def report(runs: Path, *extra: str) -> tuple[Page, str, Path]:
    out = runs / "report"
    assert main(["report", str(runs / "runs"), "--out", str(out), "-k", "5", *extra]) == 0
    text = (out / "report.html").read_text()
    page = Page()
    page.feed(text)
    return page, text, out


def test_report_embeds_everything_and_tabulates_every_run(runs: Path) -> None:
    page, text, out = report(runs)
    # self-contained: every image a decodable PNG data URI, nothing fetched from anywhere
    assert page.images and all(i["src"].startswith("data:image/png;base64,") for i in page.images)
    for image in page.images:
        Image.open(io.BytesIO(base64.b64decode(image["src"].split(",", 1)[1]))).load()
    assert all(link.startswith("#") for link in page.links)
    assert not {"script", "link", "iframe"} & page.tags
    assert "http://" not in text and "https://" not in text
    assert page.sections == ["summary", "gallery", "studies", "run-1", "run-2", "run-3", "run-4"]
    assert "codes: mAP against code length" in text  # the sweep's figure
    # the summary's figures are the runs' own
    for name in ("frozen", "trained", "codes/bits-8", "codes/bits-16"):
        metrics = json.loads((runs / "runs" / name / "metrics.json").read_text())
        assert f"{metrics['map@all']:.4f}" in text
    markdown = (out / "report.md").read_text()
    rows = [line for line in markdown.splitlines() if line.startswith("| ")]
    bits_table = (runs / "runs" / "codes" / "bits.md").read_text()
    assert len(rows) == 5 + 3 and "val mAP@all" in rows[0]  # summary: header + 4 runs
    # the sweep's own table, in both pages (header, the 2 code lengths)
    assert bits_table.rstrip() in markdown and "codes: code lengths" in text
    assert text.count("<table class=\"study\">") == 1
    assert all(f"<td>{line.split(' | ')[0].lstrip('| ')}</td>" in text
               for line in bits_table.splitlines()[2:])
    # summary.json: the same rows as the pages, the machine, the study tables by folder
    summary = json.loads((out / "summary.json").read_text())
    assert [row["run"] for row in summary["rows"]] == ["codes/bits-16", "codes/bits-8",
                                                        "frozen", "trained"]
    for row in summary["rows"]:
        metrics = json.loads((runs / "runs" / row["run"] / "metrics.json").read_text())
        assert row["map@all"] == metrics["map@all"]
    assert summary["machines"][0]["cores"] >= 1 and summary["tables"] == {"codes": bits_table}
    for line in markdown.splitlines():
        if line.startswith("!["):
            assert (out / line.split("](", 1)[1].rstrip(")")).is_file()


def test_gallery_ranks_the_same_queries_as_a_brute_force_search(runs: Path) -> None:
    """6 queries x 3 runs (frozen, trained, codes), each row the query then its top 5;
    the trained run's row is its embeddings' cosine top 5 (ties by pool index)."""
    page, _, _ = report(runs)
    thumbs = [i for i in page.images if "pool " in i.get("alt", "")]
    pool = [int(i["alt"].rsplit("pool ", 1)[1].rstrip(")")) for i in thumbs]
    assert len(pool) == 6 * 3 * 6
    rows = [pool[r * 6:(r + 1) * 6] for r in range(18)]
    embeddings = {part: np.load(runs / "runs" / "trained" / "embeddings" / f"{part}.npz")
                  for part in ("query", "database")}
    x = {p: e["x"] / np.linalg.norm(e["x"], axis=1, keepdims=True) for p, e in embeddings.items()}
    for q in range(6):
        assert len({row[0] for row in rows[3 * q:3 * q + 3]}) == 1  # one query per block
        query = rows[3 * q + 1][0]
        scores = 1 - x["database"] @ x["query"][list(embeddings["query"]["index"]).index(query)]
        order = np.lexsort((embeddings["database"]["index"], scores))[:5]
        assert rows[3 * q + 1][1:] == embeddings["database"]["index"][order].tolist()
    wrong = [i for i in thumbs if "wrong" in i.get("class", "")]
    assert all(i.get("class") in ("", "wrong", "query") for i in thumbs) and wrong is not None


def test_a_selected_margin_costs_its_whole_grid(tmp_path: Path) -> None:
    """The training time of a margin selection is the sum over its margin-* sub-runs."""
    from deephash.reporting.runs import read_run

    (tmp_path / "metrics.json").write_text(json.dumps({"map@all": 0.5}))
    (tmp_path / "run.json").write_text(json.dumps({"seconds": {"total": 90.0}}))
    assert np.isnan(read_run(tmp_path).train_seconds)  # type: ignore[union-attr]
    for margin, seconds in (("0.1", 20.5), ("0.2", 30.0)):
        (tmp_path / f"margin-{margin}").mkdir()
        (tmp_path / f"margin-{margin}" / "run.json").write_text(
            json.dumps({"seconds": {"train": seconds, "total": 99.0}}))
    assert read_run(tmp_path).train_seconds == 50.5  # type: ignore[union-attr]


def test_titles_say_what_each_run_is(tmp_path: Path) -> None:
    from deephash.reporting.runs import RunRecord

    training = {"loss": "dtsh", "miner": "batch-all", "margin": 16.0,
                "schedules": ["margin=step:1:16"], "mode": "partial", "trainable_blocks": 1}
    run = RunRecord(tmp_path, {"training": training}, {"bits": 48, "map@all": 0.5})
    assert run.title == ("48-bit codes: dtsh + batch-all, margin 16, schedule margin=step:1:16 "
                         "(partial, 1 block)")
    run = RunRecord(tmp_path, {"training": {"loss": "facenet", "miner": "semi-hard",
                                            "margin": 0.1}}, {"selected_margin": 0.4})
    assert run.title == "facenet + semi-hard, margin 0.4 (frozen)"  # the selection's margin
    run = RunRecord(tmp_path, {"backbone": {"name": "resnet18", "image_size": 224}}, {})
    assert run.kind == "frozen" and run.title == "frozen resnet18 224px"


def test_report_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--out", str(tmp_path / "r")]) == 2
    assert "give one or more run folders" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing"), "--out", str(tmp_path / "r")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty"), "--out", str(tmp_path / "r")]) == 2
    assert "holds no finished run" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_report_md_shows_names_and_titles_as_written(runs: Path, tmp_path: Path) -> None:
    """A run folder named like markup and a hostile title: report.md escapes both, so no
    raw HTML, link or table cell reaches a Markdown renderer."""
    hostile = "<script>alert(1)|[x](javascript:alert(2))"  # a folder name: no slash
    shutil.copytree(runs / "runs" / "frozen", tmp_path / "runs" / hostile)
    out = tmp_path / "report"
    assert main(["report", str(tmp_path / "runs"), "--out", str(out), "--title",
                 "<img src=x onerror=alert(3)> *bold* # not a heading", "--queries", "0"]) == 0
    text = (out / "report.md").read_text()
    assert "<script>" not in text and "<img" not in text
    assert not re.search(r"(?<!\\)\]\(javascript", text)  # every bracket escaped
    assert text.startswith("# &lt;img src=x onerror=alert(3)&gt; \\*bold\\* # not a heading\n")
    row = next(line for line in text.splitlines() if "alert(1)" in line)
    assert row.startswith("| &lt;script&gt;alert(1)\\|\\[x\\](javascript:alert(2)) | frozen "
                          "efficientnet_lite0 32px |")
    assert row.count(" | ") == 9  # the run's cells, none added by the name's pipe
    html = (out / "report.html").read_text()
    assert "<script>alert(1)" not in html and "<img src=x" not in html


def test_report_never_writes_into_a_run_folder(runs: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    frozen = runs / "runs" / "frozen"
    before = sorted(p.name for p in frozen.iterdir())
    assert main(["report", str(frozen), "--out", str(frozen)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--out {frozen} is a run folder" in err[0]
    assert sorted(p.name for p in frozen.iterdir()) == before
    assert main(["report", str(frozen), "--out", str(runs / "data")]) == 2
    assert "holds other files (no earlier report)" in capsys.readouterr().err
    assert not (runs / "data" / "report.md").exists()
    out = tmp_path / "again"  # a report's own folder takes a new report
    assert main(["report", str(frozen), "--out", str(out), "--queries", "0"]) == 0
    assert main(["report", str(frozen), "--out", str(out), "--queries", "0"]) == 0


def chromium() -> str | None:
    return next((p for name in ("chromium", "chromium-browser", "google-chrome")
                 if (p := shutil.which(name))), None)


@pytest.mark.skipif(chromium() is None, reason=NO_CHROMIUM)
def test_report_opens_in_a_browser_offline(runs: Path) -> None:
    """Headless Chromium with every network request refused: every image decodes, the
    console stays clean, every section is there; the screenshot is kept as an artefact
    of the test run (test-artefacts/, not in git)."""
    from playwright.sync_api import sync_playwright

    _, _, out = report(runs)
    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(),
                                             args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))

            def refuse(route: object) -> None:
                url = route.request.url  # type: ignore[attr-defined]
                if not url.startswith(("file:", "data:")):
                    requests.append(url)
                    route.abort()  # type: ignore[attr-defined]
                else:
                    route.continue_()  # type: ignore[attr-defined]

            page.route("**/*", refuse)
            page.goto((out / "report.html").as_uri())
            page.wait_for_load_state("load")
            decoded = page.evaluate(
                "Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)")
            sections = page.evaluate(
                "Array.from(document.querySelectorAll('section')).map(s => s.id)")
            ARTEFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTEFACTS / "report.png"), full_page=True)
        finally:
            browser.close()
    assert decoded and all(decoded)
    assert sections == ["summary", "gallery", "studies", "run-1", "run-2", "run-3", "run-4"]
    assert errors == [] and requests == []
    assert (ARTEFACTS / "report.png").stat().st_size > 10_000


def test_the_gallery_orders_a_planted_hamming_tie_by_the_relaxed_outputs(
        tmp_path: Path) -> None:
    """Codes tied in Hamming distance whose relaxed outputs differ: the gallery shows them in
    the order of the outputs (as the service does), not in pool order; a run without saved
    outputs breaks the tie in the seeded random order."""
    from deephash.fileio import save_npz
    from deephash.reporting.gallery import rank
    from deephash.reporting.runs import RunRecord

    relaxed = np.zeros((8, 8), dtype=np.float32) - 0.5
    relaxed[:, 0] = 0.1 + 0.1 * np.arange(8)  # bit 0 set: all 8 tie at distance 1 from q
    query = np.full((1, 8), -0.5, dtype=np.float32)
    database_index = np.arange(100, 108)
    for name, x, index in (("query", query, np.array([7])),
                           ("database", relaxed, database_index)):
        save_npz(tmp_path / "codes" / f"{name}.npz", codes=np.packbits(x >= 0, axis=1),
                 y=np.zeros(len(x), dtype=np.int64), bits=np.array(8), index=index,
                 relaxed=x.astype(np.float16))
    run = RunRecord(tmp_path, {"training": {"distance": "euclidean"}}, {"bits": 8})
    ranked = rank(run, np.array([7]), 3)
    assert ranked.results.tolist() == [[100, 101, 102]]  # nearest outputs: bit 0 smallest
    relaxed[:, 0] = relaxed[::-1, 0].copy()  # reversed: the last in the pool now nearest
    save_npz(tmp_path / "codes" / "database.npz", codes=np.packbits(relaxed >= 0, axis=1),
             y=np.zeros(8, dtype=np.int64), bits=np.array(8), index=database_index,
             relaxed=relaxed.astype(np.float16))
    assert rank(run, np.array([7]), 3).results.tolist() == [[107, 106, 105]]
    save_npz(tmp_path / "codes" / "database.npz", codes=np.packbits(relaxed >= 0, axis=1),
             y=np.zeros(8, dtype=np.int64), bits=np.array(8), index=database_index)
    shown = rank(run, np.array([7]), 8).results[0].tolist()
    assert sorted(shown) == list(range(100, 108)) and shown != list(range(100, 108))
    assert rank(run, np.array([7]), 8).results[0].tolist() == shown  # seeded


def test_gallery_frames_a_multi_label_hit_by_a_shared_label(tmp_path: Path) -> None:
    """Hand-made: the query has labels {class0, class1}; its nearest hit shares class1 (one
    of the two: relevant, green), the next shares none (red), the third shares class0. The
    labels of each image are listed by name; saved ``y`` is a multi-hot matrix."""
    from deephash.reporting.gallery import rank
    from deephash.reporting.html import gallery_section
    from deephash.reporting.runs import RunRecord
    from tests.conftest import make_image_folder

    data = make_image_folder(tmp_path / "data", n_classes=3, n_train=2, n_test=1)
    run = tmp_path / "run"
    hot = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1]], dtype=bool)
    (run / "embeddings").mkdir(parents=True)
    np.savez(run / "embeddings" / "query.npz", x=np.array([[1.0, 0.0]], np.float32),
             y=hot[:1], index=np.array([6]))
    np.savez(run / "embeddings" / "database.npz",
             x=np.array([[1.0, 0.1], [1.0, 0.5], [0.2, 1.0]], np.float32), y=hot[1:],
             index=np.array([0, 2, 4]))
    record = RunRecord(run, {"data": {"data_dir": str(data)}, "training": {}},
                       {"distance": "cosine"})
    ranked = rank(record, np.array([6]), 3)
    assert ranked.results.tolist() == [[0, 2, 4]]
    assert ranked.relevant.tolist() == [[True, False, True]]
    assert ranked.labels_of(0) == [[1], [2], [0, 2]]
    html = gallery_section([ranked], {run: "run"})
    page = Page()
    page.feed(html)
    frames = [(image["class"], image["alt"]) for image in page.images]
    assert frames == [("query", "class0, class1 (pool 6)"), ("", "class1 (pool 0)"),
                      ("wrong", "class2 (pool 2)"), ("", "class0, class2 (pool 4)")]
    assert "green: shares a label with the query, red: shares none" in html


def test_run_sections_name_the_figures_in_reading_order(runs: Path) -> None:
    """Each run's figures under readable names (the metrics.json key as tooltip), mAP@all
    first, then mAP@k, P@k, kNN@k, ..., the run's facts last."""
    _, text, _ = report(runs, "--queries", "0")
    tables = re.findall(r"<table class=\"metrics\">(.*?)</table>", text)
    assert len(tables) == 4
    for table in tables:
        rows = re.findall(r"<tr><td title=\"([^\"]+)\">([^<]+)</td>", table)
        keys, names = [key for key, _ in rows], [name for _, name in rows]
        assert names[:2] == ["mAP@all", "mAP@1000"]
        assert (names.index("P@10") < names.index("P@100") < names.index("kNN@1")
                < names.index("kNN@10") < names.index("protocol") < names.index("queries"))
        assert "knn_acc@1" in keys and not {"knn_acc@1", "p@100", "n_query"} & set(names)
    codes = next(table for table in tables if "title=\"bits\"" in table)
    names = re.findall(r"<tr><td title=\"[^\"]+\">([^<]+)</td>", codes)
    assert names.index("kNN@10") < names.index("prec@r2") < names.index("mAP@all (index order)")


def test_a_long_title_fits_its_pr_curve() -> None:
    """A run's PR-curve title is long (method, data, distance): it wraps inside the PNG."""
    import matplotlib.pyplot as plt

    from deephash.viz.curves import pr_figure

    title = ("DTSH likelihood + batch-all (margin 8) on a-rather-long-data-set-name: "
             "precision-recall (hamming)")
    fig = pr_figure(np.linspace(0, 1, 5), np.linspace(1, 0.2, 5), title)
    fig.canvas.draw()
    ax = fig.axes[0]
    box = ax.title.get_window_extent()
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width and box.y1 <= fig.bbox.height
    assert "\n" in ax.get_title() and ax.get_title().replace("\n", " ") == title
    short = pr_figure(np.linspace(0, 1, 5), np.linspace(1, 0.2, 5), "frozen features")
    assert short.axes[0].get_title() == "frozen features"
    plt.close(fig)
    plt.close(short)
