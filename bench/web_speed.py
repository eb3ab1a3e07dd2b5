"""The web export's speed: characters per second in headless Chromium against the library.

For each size (1 x 256 and 2 x 384, as `charlstm export --format web` writes them; one
training step on Alice: speed does not depend on the weights), the site is opened from
file:// in Debian's headless Chromium and ``charlstm.generate`` continues a 100-character
prompt, as the page's Generate does (text handed to the page as it is made). Measured:

- first character: from the call to the first character handed over (the prompt read, one draw);
- characters/s: the continuation's characters over its seconds, first character excluded;

against the library on the same model and machine (``generate_text``, batch 1, one thread, as a
browser tab has one). Rounds alternate page and library; medians are quoted.

    python bench/web_speed.py
    python bench/web_speed.py --length 500 --rounds 1 --no-write
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import _report
from charlstm.generation.generators import generate
from charlstm.interop.web import export_web, folder_size
from charlstm.runs.loading import load_model
from charlstm.training import session as api

ALICE = _report.ROOT.parent / "shared" / "corpora" / "wonderland.txt"
SIZES = {"1 x 256": (1, 256), "2 x 384": (2, 384)}
TARGET_CHARS_PER_S, TARGET_FIRST_MS = 500.0, 300.0  # the 2 x 384 model in the page

PAGE_SCRIPT = """
const [prompt, length, done] = arguments;
const started = performance.now();
let first = null, count = 0;
charlstm.generate(prompt, {length, temperature: 1.0, seed: 1, onText: (chunk) => {
  if (first === null) first = performance.now();
  count += chunk.length;
}}).then(() => {
  const end = performance.now();
  done({first_ms: first - started, chars_per_s: (count - 1) / ((end - first) / 1000)});
}, (error) => done({error: String(error)}));
"""


def browser(profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = shutil.which("chromedriver")
    if not (chromium and chromedriver):
        sys.exit("needs chromium and chromedriver (Debian: apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-dev-shm-usage", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    driver.set_script_timeout(600)
    return driver


def page_round(driver, site: Path, prompt: str, length: int) -> dict[str, float]:
    driver.get((site / "index.html").resolve().as_uri())
    out = driver.execute_async_script(PAGE_SCRIPT, prompt, length)
    if "error" in out:
        raise RuntimeError(out["error"])
    return out


def library_round(loaded: Any, prompt: str, length: int) -> dict[str, float]:
    from charlstm.config.sample import SampleConfig

    started = time.perf_counter()
    _, steps = generate(loaded, prompt, SampleConfig(length=length, seed=1))
    next(steps)
    first = time.perf_counter()
    count = 1 + sum(1 for _ in steps)
    end = time.perf_counter()
    return {"first_ms": (first - started) * 1000, "chars_per_s": (count - 1) / (end - first)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--length", type=int, default=2000, help="characters per round (default 2000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per size (default 3)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    prompt = ALICE.read_text(encoding="utf-8")[5000:5100]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="charlstm-web-") as tmp:
        driver = browser(Path(tmp) / "profile")
        try:
            for label, (layers, hidden) in SIZES.items():
                run = Path(tmp) / f"run-{hidden}"
                api.train([ALICE], out_dir=run, preset="default", num_layers=layers, hidden_size=hidden,
                          max_steps=1, batch_size=8, progress_bar=False)
                loaded = load_model(run)
                site = export_web(loaded, Path(tmp) / f"site-{hidden}")
                page, library = [], []
                for _ in range(args.rounds):
                    page.append(page_round(driver, site, prompt, args.length))
                    library.append(library_round(loaded, prompt, args.length))
                results[label] = {
                    "parameters": loaded.model.num_parameters(), "site_kib": folder_size(site) / 1024,
                    **{f"{who}_{key}": statistics.median(r[key] for r in rounds)
                       for who, rounds in (("page", page), ("library", library))
                       for key in ("first_ms", "chars_per_s")},
                    "rounds": {"page": page, "library": library}}
                print(label, {k: v for k, v in results[label].items() if k != "rounds"}, flush=True)
        finally:
            driver.quit()
    header = ["model", "parameters", "site", "page chars/s", "library chars/s", "page / library",
              "page first char", "library first char"]
    rows = [[label, f"{r['parameters']:,}", f"{r['site_kib']:,.0f} KiB", f"{r['page_chars_per_s']:,.0f}",
             f"{r['library_chars_per_s']:,.0f}", f"{r['page_chars_per_s'] / r['library_chars_per_s']:.2f}",
             f"{r['page_first_ms']:.0f} ms", f"{r['library_first_ms']:.0f} ms"]
            for label, r in results.items()]
    big = results["2 x 384"]
    fast, quick = big["page_chars_per_s"] >= TARGET_CHARS_PER_S, big["page_first_ms"] <= TARGET_FIRST_MS
    verdicts = [
        f"Target: the 2 x 384 model at least {TARGET_CHARS_PER_S:.0f} characters/s in the page: "
        f"{big['page_chars_per_s']:,.0f}, {'meets' if fast else 'misses'} it.",
        f"Target: its first character within {TARGET_FIRST_MS:.0f} ms of Generate for a 100-character "
        f"prompt: {big['page_first_ms']:.0f} ms, {'meets' if quick else 'misses'} it.",
    ]
    notes = [f"A {len(prompt)}-character prompt, then {args.length} characters at temperature 1, seed 1; "
             f"median of {args.rounds} rounds, page and library alternating.",
             "Page: headless Chromium, the site opened from file://, `charlstm.generate` as the page's "
             "Generate calls it (float32 weights; the text handed over as it is made). Library: "
             "`charlstm.generation.generators.generate`, batch 1, one torch thread."]
    table = _report.markdown_table(header, rows)
    print("\n" + "\n".join([*notes, table, *verdicts]))
    if args.no_write:
        return
    info = _report.machine_info()
    markdown = _report.section_markdown("The web page's speed (`bench/web_speed.py`)", info,
                                        [_report.bullets(notes), table, *verdicts])
    _report.record("web_speed", markdown, {"machine": info, "length": args.length, "results": results})


if __name__ == "__main__":
    sys.exit(main())
