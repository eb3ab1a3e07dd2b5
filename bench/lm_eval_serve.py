"""lm-evaluation-harness against `charlstm serve`: a loglikelihood task through `local-completions`.

EleutherAI's harness scores a served model through OpenAI's completions API (echo, logprobs 1,
a context and a continuation). Its tasks' datasets come from the Hugging Face Hub, which is not
reachable here, so this script writes a task of its own in the harness's YAML format over a local
JSON file: "which of four 20-character continuations follows this 100-character context?", the
contexts and continuations cut from Alice's held-out text (the other three choices from
elsewhere in it). The harness runs it against `charlstm serve` (tokens from the server's
/tokenize: characters), and every loglikelihood it reports is checked against charlstm's own
scoring of the same continuation (``continuation_logprobs``): they must agree.

Needs `pip install lm_eval` (its `api` extra: requests, aiohttp, tenacity) beside charlstm.

    python bench/lm_eval_serve.py                       # trains 60 s on Alice, 100 questions
    python bench/lm_eval_serve.py --run runs/alice --docs 200 --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

import _report
from charlstm.generation.generators import continuation_logprobs
from charlstm.runs.loading import load_model

ALICE = _report.ROOT.parent / "shared" / "corpora" / "wonderland.txt"
CONTEXT, CONTINUATION, CHOICES = 100, 20, 4
TASK = "charlstm_alice_next"

TASK_YAML = """task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{context}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: label
target_delimiter: ""
metric_list:
  - metric: acc
"""


def questions(text: str, count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` four-way questions from ``text``: a context, the true continuation and three others."""
    rng = np.random.default_rng(seed)
    span = CONTEXT + CONTINUATION
    starts = rng.choice(np.arange(0, len(text) - span, span), size=count, replace=False)
    docs = []
    for start in starts.tolist():
        context, truth = text[start:start + CONTEXT], text[start + CONTEXT:start + span]
        others = []
        while len(others) < CHOICES - 1:
            k = int(rng.integers(0, len(text) - CONTINUATION))
            if abs(k - start - CONTEXT) > span and text[k:k + CONTINUATION] not in others:
                others.append(text[k:k + CONTINUATION])
        label = int(rng.integers(CHOICES))
        choices = [*others[:label], truth, *others[label:]]
        docs.append({"context": context, "choices": choices, "label": label})
    return docs


def charlstm_scores(loaded: Any, docs: list[dict[str, Any]]) -> list[list[float]]:
    """Each choice's total log-probability given its context, by charlstm's own scoring.

    As the harness splits them: a context's trailing whitespace moves to the start of each
    continuation (its ``_encode_pair``), so the same characters are scored given the same text.
    """
    scores = []
    for doc in docs:
        context = doc["context"].rstrip()
        moved = doc["context"][len(context):]
        prompt = torch.as_tensor(loaded.vocab.encode(context))
        row = []
        for choice in doc["choices"]:
            ids = loaded.vocab.encode(moved + choice)
            row.append(continuation_logprobs(loaded.model, prompt, [ids])[0] * len(ids))
        scores.append(row)
    return scores


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="run folder to serve (default: train 60 s on Alice)")
    parser.add_argument("--docs", type=int, default=100, help="questions (default 100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager
    except ImportError:
        sys.exit("lm_eval is not installed: pip install 'lm_eval[api]'")
    from charlstm.data.prepared import open_prepared
    from charlstm.runs.folder import data_dir
    from charlstm.training import session as api
    from serve_load import free_port, start_server

    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # the task's data is a local file
    with tempfile.TemporaryDirectory(prefix="charlstm-lm-eval-") as tmp:
        run = args.run
        if run is None:
            run = Path(tmp) / "alice"
            api.train([ALICE], out_dir=run, time_budget=60, lowercase=True, progress_bar=False)
        loaded = load_model(run)
        held_out = loaded.vocab.decode(np.asarray(open_prepared(data_dir(run)).split("val")))
        docs = questions(held_out, args.docs, args.seed)
        data = Path(tmp) / "docs.jsonl"
        data.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
        tasks = Path(tmp) / "tasks"
        tasks.mkdir()
        (tasks / f"{TASK}.yaml").write_text(TASK_YAML.format(task=TASK, data=data), encoding="utf-8")
        port = free_port()
        server = start_server(run, port, 16, Path(tmp) / "serve.log", batching=True, device="cpu")
        try:
            out = lm_eval.simple_evaluate(
                model="local-completions",
                model_args={"model": run.name, "tokenizer_backend": "remote", "tokenized_requests": False,
                            "base_url": f"http://127.0.0.1:{port}/v1/completions", "num_concurrent": 1,
                            "max_retries": 1},
                tasks=[TASK], task_manager=TaskManager(include_path=str(tasks)), log_samples=True)
        finally:
            server.terminate()
            server.wait(timeout=30)
    harness = out["results"][TASK]
    samples = sorted(out["samples"][TASK], key=lambda s: s["doc_id"])
    ours = charlstm_scores(loaded, docs)
    theirs = [[float(r[0]) for r in s["filtered_resps"]] for s in samples]
    gap = max(abs(a - b) for row_a, row_b in zip(ours, theirs, strict=True)
              for a, b in zip(row_a, row_b, strict=True))
    accuracy = float(np.mean([int(np.argmax(r)) == d["label"] for r, d in zip(ours, docs, strict=True)]))
    acc = harness.get("acc,none", harness.get("acc"))
    rows = [["lm-evaluation-harness `local-completions` (through `charlstm serve`)", f"{acc:.3f}"],
            ["charlstm's own scoring (`continuation_logprobs`)", f"{accuracy:.3f}"]]
    notes = [f"{len(docs)} questions from Alice's held-out text: a {CONTEXT}-character context, its true "
             f"{CONTINUATION}-character continuation among {CHOICES} (chance: {1 / CHOICES:.2f}); the model: "
             f"{loaded.model.config.num_layers} x {loaded.model.config.hidden_size}, "
             f"{loaded.model.num_parameters():,} parameters, trained on lowercased Alice.",
             "The harness's own call: `lm_eval --model local-completions --model_args model=NAME,"
             "base_url=http://127.0.0.1:PORT/v1/completions,tokenizer_backend=remote,"
             "tokenized_requests=False` (the server's /tokenizer_info and /tokenize give it characters "
             "as tokens).",
             f"lm_eval {lm_eval.__version__ if hasattr(lm_eval, '__version__') else '?'}; the largest "
             f"difference between a loglikelihood the harness got through the API and charlstm's own: "
             f"{gap:.2e} nats."]
    table = _report.markdown_table(["scored by", "accuracy"], rows)
    print("\n".join([*notes, table]))
    assert gap < 1e-3, f"the harness's loglikelihoods differ from charlstm's by {gap}"
    if args.no_write:
        return
    info = _report.machine_info()
    heading = "lm-evaluation-harness through `charlstm serve` (`bench/lm_eval_serve.py`)"
    markdown = _report.section_markdown(heading, info, [_report.bullets(notes), table])
    _report.record("lm_eval_serve", markdown, {"machine": info, "accuracy": acc, "max_gap": gap,
                                               "charlstm_accuracy": accuracy, "docs": len(docs)})


if __name__ == "__main__":
    sys.exit(main())
