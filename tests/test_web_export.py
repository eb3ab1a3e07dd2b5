"""The web export: a static site whose JavaScript LSTM generates as charlstm does.

runtime.js runs in Node as in a browser, so the logits and greedy text are checked against
PyTorch's in Node (skipped without ``node``); one test opens the page from file:// in Debian's
headless Chromium (skipped without chromium, chromedriver and selenium).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from _runs import invoke, train_stream_run, train_window_run, write_text
from _serving import tiny_items_run
from charlstm.errors import CheckpointError, ConfigError
from charlstm.generation.generators import generate_text
from charlstm.interop.web import export_web
from charlstm.runs.loading import load_model

NODE = shutil.which("node")
PROMPT = "the quick brown fox "

# Loads the site as index.html does (model.js, then runtime.js), then prints the logits after
# the prompt and a greedy continuation as JSON.
NODE_SCRIPT = """
const site = process.argv[2], prompt = process.argv[3];
require(site + "/model.js");
require(site + "/runtime.js");
const model = globalThis.charlstm.model();
const { logits } = model.read(model.encode(prompt));
globalThis.charlstm.generate(prompt, { length: 50, greedy: true }).then((text) => {
  console.log(JSON.stringify({ logits: Array.from(logits), text }));
});
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("web")
    # Two layers and enough training (a couple of seconds) for greedy text that is more than one
    # repeated character.
    return train_stream_run(root / "run", write_text(root / "t.txt"), num_layers=2, max_steps=300,
                            lr=0.01, eval_every=100)


@pytest.fixture(scope="module")
def loaded(run_dir):
    return load_model(run_dir)


def run_in_node(site: Path, tmp_path: Path) -> dict:
    script = tmp_path / "check.js"
    script.write_text(NODE_SCRIPT)
    done = subprocess.run([NODE, str(script), str(site.resolve()), PROMPT], capture_output=True,
                          text=True, timeout=60, check=True)
    return json.loads(done.stdout)


@pytest.mark.skipif(NODE is None, reason="node is not installed: the JavaScript runtime is not checked")
@pytest.mark.parametrize(("weights", "tolerance"), [("f32", 1e-4), ("f16", 1e-2)])
def test_javascript_matches_pytorch(loaded, tmp_path, weights, tolerance):
    site = export_web(loaded, tmp_path / "site", weights=weights)
    result = run_in_node(site, tmp_path)
    ids = torch.from_numpy(loaded.vocab.encode(PROMPT)).unsqueeze(0)  # (1, P)
    with torch.no_grad():
        expected = loaded.model(ids)[0][0, -1]
    torch.testing.assert_close(torch.tensor(result["logits"], dtype=torch.float32), expected,
                               atol=tolerance, rtol=0)
    if weights == "f32":
        greedy = generate_text(loaded, PROMPT, length=50, greedy=True)[0]
        assert len(set(greedy)) > 1, "the tiny model repeats one character: the check would prove little"
        assert result["text"] == greedy


def test_site_is_self_contained_and_f16_is_smaller(loaded, tmp_path):
    full = export_web(loaded, tmp_path / "f32")
    half = export_web(loaded, tmp_path / "f16", weights="f16")
    assert sorted(p.name for p in full.iterdir()) == ["index.html", "model.js", "runtime.js"]
    for path in full.iterdir():
        assert not re.search(r"https?://", path.read_text(encoding="utf-8")), path.name
    html = (full / "index.html").read_text(encoding="utf-8")
    assert "{{" not in html and '<label for="temperature">' in html
    assert (half / "model.js").stat().st_size < 0.6 * (full / "model.js").stat().st_size
    with pytest.raises(ConfigError, match="f32, f16"):
        export_web(loaded, tmp_path / "int8", weights="int8")


def test_cli_writes_the_site_reports_its_size_and_refuses_to_write_over_it(run_dir, tmp_path):
    site = tmp_path / "site"
    first = invoke("export", run_dir, "--format", "web", "--out", site, "--weights", "f16")
    assert first.exit_code == 0, first.output
    assert "KiB" in first.output and (site / "index.html").is_file()
    again = invoke("export", run_dir, "--format", "web", "--out", site)
    assert again.exit_code == ConfigError.exit_code and "not empty" in again.output
    forced = invoke("export", run_dir, "--format", "web", "--out", site, "--force")
    assert forced.exit_code == 0, forced.output
    inside = invoke("export", run_dir, "--format", "web", "--out", run_dir / "site")
    assert inside.exit_code == CheckpointError.exit_code and "run folder" in inside.output
    wrong = invoke("export", run_dir, "--format", "onnx", "--out", tmp_path / "m.onnx", "--weights", "f16")
    assert wrong.exit_code == ConfigError.exit_code


def test_window_and_gru_models_are_refused_naming_what(tmp_path):
    text = write_text(tmp_path / "t.txt")
    window = load_model(train_window_run(tmp_path / "window", text))
    with pytest.raises(ConfigError, match=r"framing window.*input_encoding scalar"):
        export_web(window, tmp_path / "a")
    gru = load_model(train_stream_run(tmp_path / "gru", text, cell="gru"))
    with pytest.raises(ConfigError, match="cell gru"):
        export_web(gru, tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# --- node: the sampler and items ---------------------------------------------------------------

def node_eval(site: Path, tmp_path: Path, body: str) -> object:
    """Run ``body`` (an async function's, with ``charlstm`` and ``model`` in scope) in Node, after
    loading the site as index.html does; what it returns, through JSON."""
    script = tmp_path / "eval.js"
    script.write_text(f"""
require({json.dumps(str(site.resolve()))} + "/model.js");
require({json.dumps(str(site.resolve()))} + "/runtime.js");
const charlstm = globalThis.charlstm, model = charlstm.model();
(async () => {{ {body} }})().then((out) => console.log(JSON.stringify(out)));
""")
    done = subprocess.run([NODE, str(script)], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout)


needs_node = pytest.mark.skipif(NODE is None,
                                reason="node is not installed: the JavaScript runtime is not checked")


@needs_node
def test_javascript_repetition_control_and_min_p_match_python(loaded, tmp_path):
    from charlstm.generation.sampling import RepeatPenalty

    site = export_web(loaded, tmp_path / "site")
    ids = [3, 1, 4, 1, 5, 9, 2, 6, 1, 4, 1, 5, 9, 2, 6, 1, 4]
    out = node_eval(site, tmp_path, f"""
        const penalties = Array.from(charlstm.repeatPenalties({ids}, 0.8, 1.75, 3));
        const dry = await charlstm.generate({json.dumps(PROMPT)}, {{length: 150, greedy: true,
            dryMultiplier: 0.8, dryAllowedLength: 6}});
        const plain = await charlstm.generate({json.dumps(PROMPT)}, {{length: 150, greedy: true}});
        return {{penalties, dry, plain}};""")
    expected = RepeatPenalty(0.8, 1.75, 3).penalties(ids)
    assert {int(k): pytest.approx(v) for k, v in out["penalties"]} == expected and expected
    assert out["dry"] == generate_text(loaded, PROMPT, length=150, greedy=True, dry_multiplier=0.8,
                                       dry_allowed_length=6)[0]
    assert out["plain"] == generate_text(loaded, PROMPT, length=150, greedy=True)[0]


@needs_node
@pytest.mark.parametrize("options", [{"temperature": 0.8}, {"temperature": 1.2, "topK": 5},
                                     {"topP": 0.8}, {"minP": 0.1, "temperature": 1.5}])
def test_javascript_draws_follow_the_models_distribution(loaded, tmp_path, options):
    from charlstm.config.sample import SampleConfig
    from charlstm.generation.sampling import Sampler

    site = export_web(loaded, tmp_path / "site")
    draws = 20_000
    counts = node_eval(site, tmp_path, f"""
        const {{ logits }} = model.read(model.encode({json.dumps(PROMPT)}));
        const random = charlstm.mulberry32(7), counts = new Array(model.V).fill(0);
        for (let n = 0; n < {draws}; n++) counts[charlstm.choose(logits, {json.dumps(options)}, random)]++;
        return counts;""")
    settings = {"temperature": options.get("temperature", 1.0), "top_k": options.get("topK"),
                "top_p": options.get("topP"), "min_p": options.get("minP")}
    ids = torch.from_numpy(loaded.vocab.encode(PROMPT)).unsqueeze(0)
    with torch.no_grad():
        logits = loaded.model(ids)[0][:, -1].float()
    sampler = Sampler(SampleConfig(**settings))
    scores = sampler.scores(logits) if sampler.filtered else logits / settings["temperature"]
    probs = scores.softmax(-1)[0]
    observed = torch.tensor(counts, dtype=torch.float64) / draws
    assert observed[probs == 0].sum() == 0  # nothing a filter dropped is ever drawn
    # Each share within 5 standard errors of the model's probability, and a chi-square test of the
    # whole: the statistic under its mean + 6 standard deviations (df + 6 sqrt(2 df); p < 1e-6).
    stderr = (probs * (1 - probs) / draws).sqrt().double()
    assert ((observed - probs.double()).abs() <= 5 * stderr + 1e-3).all()
    kept = probs > 0
    expected = probs.double()[kept] * draws
    chi2 = ((observed[kept] * draws - expected) ** 2 / expected).sum().item()
    df = int(kept.sum()) - 1
    assert chi2 < df + 6 * (2 * df) ** 0.5, (chi2, df)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    return load_model(tiny_items_run(tmp_path_factory, labelled=True))


@needs_node
def test_javascript_items_are_pythons_and_marked_new_or_in_the_list(labelled, tmp_path):
    from charlstm.config.sample import SampleConfig
    from charlstm.generation.items import generate_items, training_items

    site = export_web(labelled, tmp_path / "site", include_list=True)
    out = node_eval(site, tmp_path, """
        const greedy = await charlstm.generateItems({count: 2, label: "small", greedy: true});
        const drawn = await charlstm.generateItems({count: 30, seed: 3, maxChars: 40});
        let refused = null;
        try { await charlstm.generate("b", {length: 5}); } catch (error) { refused = error.message; }
        return {greedy, drawn, refused};""")
    python = generate_items(labelled, 1, SampleConfig(greedy=True), labels=["small"]).items[0]
    assert [item["text"] for item in out["greedy"]] == [python.text] * 2
    assert out["greedy"][0]["complete"] and out["greedy"][0]["label"] == "small"
    known = training_items(labelled)
    assert {item["label"] for item in out["drawn"]} == {"big", "small"}  # drawn by their counts
    for item in out["drawn"]:
        assert not re.search("[\x02\x03\ue000-\uf8ff]", item["text"])
        assert item["novel"] == (item["text"] not in known)
    assert "generateItems" in out["refused"]
    plain = export_web(labelled, tmp_path / "plain")
    spec = (plain / "model.js").read_text()[len("globalThis.CHARLSTM_MODEL = "):-2]
    assert json.loads(spec)["list"] is None


def test_include_list_is_for_a_model_of_a_list(loaded, tmp_path):
    with pytest.raises(ConfigError, match="running text"):
        export_web(loaded, tmp_path / "site", include_list=True)
    result = invoke("export", "x", "--format", "onnx", "--out", tmp_path / "m.onnx", "--include-list")
    assert result.exit_code == ConfigError.exit_code and "web export only" in result.output


# --- Chromium: the page from file:// --------------------------------------------------------------

@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    pytest.importorskip("selenium", reason="selenium is not installed: pip install -e '.[dev,serve]'")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = shutil.which("chromedriver")
    if not (chromium and chromedriver):
        pytest.skip("no Chromium here: apt-get install chromium chromium-driver (Debian)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    from test_serve_browser import CHROMIUM_FLAGS

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('profile')}"]:
        options.add_argument(flag)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SE_OFFLINE", "true")  # the driver is given: Selenium Manager stays offline
        driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    yield driver
    driver.quit()


def run_page(driver, site: Path, fields: dict[str, str], checks: tuple[str, ...] = (), until: str = " in "):
    """Open the site, fill ``fields`` (input id -> value), tick ``checks``, click Generate, wait."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get((site / "index.html").resolve().as_uri())
    for name, value in fields.items():
        driver.execute_script("document.getElementById(arguments[0]).value = arguments[1];", name, value)
    for name in checks:
        driver.execute_script("document.getElementById(arguments[0]).checked = true;", name)
    driver.find_element("id", "generate").click()
    WebDriverWait(driver, 60).until(lambda d: until in d.find_element("id", "status").text)


def requested_urls(driver) -> list[str]:
    """Every URL the page has loaded: the document and each resource (the browser's network log)."""
    return driver.execute_script(
        "return [document.URL, ...performance.getEntriesByType('resource').map((e) => e.name)];")


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """A 2 x 384 model (two steps of training), its weights scaled so greedy text is not one letter."""
    root = tmp_path_factory.mktemp("web-wide")
    run = train_stream_run(root / "run", write_text(root / "t.txt"), num_layers=2, hidden_size=384,
                           max_steps=2)
    loaded = load_model(run)
    with torch.no_grad():
        for param in loaded.model.parameters():
            param.mul_(4.0)
    return loaded


@pytest.mark.parametrize("which", ["tiny", "2x384"])
def test_page_greedy_text_equals_the_librarys_for_300_characters(browser, loaded, wide, which, tmp_path):
    model = loaded if which == "tiny" else wide
    site = export_web(model, tmp_path / "site")
    run_page(browser, site, {"prompt": PROMPT, "length": "300"}, checks=("greedy",))
    text = browser.execute_script("return document.getElementById('output').textContent")
    greedy = generate_text(model, PROMPT, length=300, greedy=True)[0]
    assert len(set(greedy)) > 3 and text == PROMPT + greedy
    assert "300 characters" in browser.find_element("id", "status").text
    assert all(url.startswith("file://") for url in requested_urls(browser))


def test_stop_stops_the_page(browser, wide, tmp_path):
    from selenium.webdriver.support.ui import WebDriverWait

    site = export_web(wide, tmp_path / "site")  # a tiny model makes 100,000 characters in a second
    browser.get((site / "index.html").resolve().as_uri())
    browser.execute_script("document.getElementById('length').value = '100000';")
    browser.find_element("id", "generate").click()
    WebDriverWait(browser, 20).until(
        lambda d: len(d.execute_script("return document.getElementById('output').textContent")) > 50)
    browser.find_element("id", "stop").click()
    WebDriverWait(browser, 20).until(lambda d: "(stopped)" in d.find_element("id", "status").text)
    made = len(browser.execute_script("return document.getElementById('output').textContent"))
    assert made < 100_000 and browser.execute_script("return document.getElementById('stop').disabled")


def test_a_list_models_page_makes_whole_items_marked_new_or_in_the_list(browser, labelled, tmp_path):
    from charlstm.generation.items import training_items

    site = export_web(labelled, tmp_path / "site", include_list=True)
    run_page(browser, site, {"count": "8", "seed": "5", "label": "big"}, until="items")
    rows = browser.execute_script(
        "return Array.from(document.querySelectorAll('#items li')).map((li) => [li.firstChild.textContent, "
        "li.querySelector('.mark') ? li.querySelector('.mark').textContent : '']);")
    known = training_items(labelled)
    assert len(rows) == 8
    for text, mark in rows:
        assert text and not re.search("[\x02\x03\ue000-\uf8ff]", text)
        assert ("in the list" in mark) == (text in known) and ("new" in mark) == (text not in known)
    assert browser.find_element("id", "label").is_displayed()
    assert all(url.startswith("file://") for url in requested_urls(browser))
