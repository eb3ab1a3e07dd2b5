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


def test_page_generates_from_file_url(loaded, tmp_path):
    pytest.importorskip("selenium", reason="selenium is not installed: pip install -e '.[dev,serve]'")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = shutil.which("chromedriver")
    if not (chromium and chromedriver):
        pytest.skip("no Chromium here: apt-get install chromium chromium-driver (Debian)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    from test_serve_browser import CHROMIUM_FLAGS

    site = export_web(loaded, tmp_path / "site")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SE_OFFLINE", "true")  # the driver is given: Selenium Manager stays offline
        driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    try:
        driver.get((site / "index.html").resolve().as_uri())
        assert "parameters" in driver.find_element("id", "facts").text
        driver.execute_script("document.getElementById('prompt').value = arguments[0];"
                              "document.getElementById('length').value = '60';", PROMPT)
        driver.find_element("id", "generate").click()
        WebDriverWait(driver, 20).until(lambda d: "characters in" in d.find_element("id", "status").text)
        output = driver.find_element("id", "output").text
        assert output.startswith(PROMPT.strip()) and len(output) > len(PROMPT) + 40
        assert driver.execute_script("return document.getElementById('stop').disabled")
    finally:
        driver.quit()
