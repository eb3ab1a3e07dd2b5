"""``charlstm generate --prompt-file``: the prompt read from a file or standard input, end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import Result

from _runs import invoke, sample_text, train_stream_run, write_text

PROMPT = "the White Rabbit runs"
ARGS = ("--length", "40", "--seed", "4")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("generate-cli")
    return train_stream_run(root / "run", write_text(root / "text.txt"))


def prompt_file(folder: Path, content: str | bytes, name: str = "prompt.txt") -> Path:
    path = folder / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def assert_one_error(result: Result, exit_code: int, fragment: str) -> None:
    assert result.exit_code == exit_code, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("charlstm: error: ")]
    assert len(errors) == 1 and fragment in errors[0], result.stderr
    assert result.stdout == ""


def test_a_prompt_file_continues_as_the_same_prompt_given_inline(run, tmp_path):
    inline = invoke("generate", run, "--prompt", PROMPT, *ARGS)
    from_file = invoke("generate", run, "--prompt-file", prompt_file(tmp_path, PROMPT), *ARGS)
    assert inline.exit_code == from_file.exit_code == 0, from_file.output
    assert inline.stdout.startswith(PROMPT)
    assert from_file.stdout == inline.stdout[len(PROMPT) :]  # the continuation only: no echo
    assert len(from_file.stdout) == 40 + 1


def test_dash_reads_the_prompt_from_standard_input(run, tmp_path):
    from_file = invoke("generate", run, "--prompt-file", prompt_file(tmp_path, PROMPT), *ARGS)
    from_stdin = invoke("generate", run, "--prompt-file", "-", *ARGS, stdin=PROMPT.encode("utf-8"))
    assert from_stdin.exit_code == 0, from_stdin.output
    assert from_stdin.stdout == from_file.stdout


def test_a_prompt_file_is_cleaned_as_an_inline_prompt(run, tmp_path):
    # A BOM is dropped and CRLF becomes LF, as for the training text.
    path = prompt_file(tmp_path, b"\xef\xbb\xbfthe fox\r\njumps")
    from_file = invoke("generate", run, "--prompt-file", path, *ARGS)
    inline = invoke("generate", run, "--prompt", "the fox\njumps", *ARGS)
    assert from_file.exit_code == 0, from_file.output
    assert from_file.stdout == inline.stdout[len("the fox\njumps") :]


def test_a_prompt_file_with_several_samples_prints_only_their_continuations(run, tmp_path):
    args = ("--length", "20", "--seed", "2", "--num-samples", "2")
    from_file = invoke("generate", run, "--prompt-file", prompt_file(tmp_path, PROMPT), *args)
    inline = invoke("generate", run, "--prompt", PROMPT, *args)
    assert from_file.exit_code == 0, from_file.output
    assert from_file.stdout == inline.stdout.replace(f"---\n{PROMPT}", "---\n")


def test_a_megabyte_prompt_file_prints_only_the_continuation(run, tmp_path):
    text = sample_text()
    path = prompt_file(tmp_path, (text * (1_000_000 // len(text) + 1))[:1_000_000])
    result = invoke("generate", run, "--prompt-file", path, "--length", "25", "--seed", "0")
    assert result.exit_code == 0, result.output
    assert len(result.stdout) == 25 + 1


def test_a_prompt_and_a_prompt_file_together_are_refused(run, tmp_path):
    path = prompt_file(tmp_path, PROMPT)
    assert_one_error(invoke("generate", run, "--prompt", "the", "--prompt-file", path), 2, "not both")
    assert_one_error(invoke("generate", run, "--interactive", "--prompt-file", path), 2, "--prompt-file")


@pytest.mark.parametrize(("content", "exit_code", "fragment"), [
    (None, 3, "no such file"),
    (b"the \xff fox", 3, "not valid UTF-8 at byte offset 4"),
    (b"", 3, "is empty"),
    (b"\xef\xbb\xbf", 3, "is empty"),
    ("the \u2603 fox", 3, "'\u2603'"),  # unknown characters, listed as for an inline prompt
])
def test_a_bad_prompt_file_is_one_error_line(run, tmp_path, content, exit_code, fragment):
    path = tmp_path / "absent.txt" if content is None else prompt_file(tmp_path, content)
    assert_one_error(invoke("generate", run, "--prompt-file", path, "--length", "5"), exit_code, fragment)


def test_a_folder_as_prompt_file_is_one_error_line(run, tmp_path):
    assert_one_error(invoke("generate", run, "--prompt-file", tmp_path, "--length", "5"), 3, "cannot read")


def test_stop_ends_the_printed_text_before_the_stop_sequence(run):
    full = invoke("generate", run, "--prompt", "the ", "--length", "200", "--seed", "4")
    continuation = full.stdout[len("the "):].rstrip("\n")
    stop = continuation[60:63]
    stopped = invoke("generate", run, "--prompt", "the ", "--length", "200", "--seed", "4", "--stop", stop)
    assert stopped.exit_code == 0, stopped.output
    assert stopped.stdout == "the " + continuation[: continuation.index(stop)] + "\n"
    assert "finished at a stop sequence" in stopped.stderr


def test_stop_with_several_samples_marks_the_ones_it_ended(run):
    args = ("generate", run, "--prompt", "the ", "--length", "120", "--seed", "4", "--num-samples", "2")
    full = invoke(*args).stdout
    first = full.split("--- sample 2 ---")[0].removeprefix("--- sample 1 ---\nthe ").rstrip("\n")
    stopped = invoke(*args, "--stop", first[30:33]).stdout
    assert stopped.startswith("--- sample 1 (finished at a stop sequence) ---\nthe "
                              + first[: first.index(first[30:33])] + "\n")


def test_a_bad_stop_is_one_error(run):
    assert_one_error(invoke("generate", run, "--stop", ""), 2, "stop sequence")


@pytest.mark.parametrize("filters", [(), ("--top-p", "0.9"), ("--top-k", "3"),
                                     ("--top-k", "5", "--top-p", "0.5")])
@pytest.mark.parametrize("temperature", ["1e-39", "1e-40", "1e-300"])
def test_a_tiny_temperature_with_any_filter_gives_the_greedy_text(run, temperature, filters):
    greedy = invoke("generate", run, "--prompt", PROMPT, "--length", "60", "--greedy")
    tiny = invoke("generate", run, "--prompt", PROMPT, "--length", "60", "--temperature", temperature,
                  *filters, "--seed", "3")
    assert tiny.exit_code == greedy.exit_code == 0, tiny.output
    assert tiny.stdout == greedy.stdout


@pytest.mark.parametrize(("args", "fragment"), [
    (("--temperature", "nan"), "temperature must be in"),
    (("--temperature", "inf"), "temperature must be in"),
    (("--temperature", "0"), "set greedy"),
    (("--top-p", "nan"), "top_p must be in"),
    (("--seed", "-1"), "seed must be in"),
    (("--seed", str(2**63)), "seed must be in"),
    (("--seed", str(2**64)), "seed must be in"),
    (("--num-samples", "100000000000"), "num_samples must be in"),
    (("--length", "100000000000"), "length must be in"),
    (("--prompt", "x\u00e9", "--unknown", "replace"), "needs the replacement character"),
])
def test_sampling_settings_out_of_range_are_one_line_and_exit_2(run, args, fragment):
    assert_one_error(invoke("generate", run, "--prompt", PROMPT, "--length", "5", *args), 2, fragment)


def test_greedy_takes_temperature_zero_as_greedy_says(run):
    greedy = invoke("generate", run, "--prompt", PROMPT, "--length", "30", "--greedy")
    zero = invoke("generate", run, "--prompt", PROMPT, "--length", "30", "--greedy", "--temperature", "0")
    assert zero.exit_code == 0 and zero.stdout == greedy.stdout


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_dynamic_evaluation_settings_out_of_range_are_refused(run, value):
    assert_one_error(invoke("eval", run, "--dynamic", "--dynamic-lr", value), 2, "lr must be in")


def test_report_refuses_a_negative_seed(run, tmp_path):
    result = invoke("report", run, "--out", tmp_path / "r.html", "--seed", "-1")
    assert_one_error(result, 2, "seed must be in")


# ---- --interactive: a session survives Ctrl-C and characters the model does not know ----------

TALK = ("generate", "--interactive", "--length", "15", "--seed", "6")


def talk(run: Path, *lines: str) -> Result:
    """An interactive session fed ``lines`` on standard input, then its end (Ctrl-D)."""
    return invoke(TALK[0], run, *TALK[1:], stdin="".join(f"{line}\n" for line in lines))


def test_an_unknown_character_in_a_session_is_one_line_and_the_session_goes_on(run):
    plain = talk(run, "the ", "")
    with_bad = talk(run, "the ", "a \u2603 b", "")
    assert with_bad.exit_code == plain.exit_code == 0, with_bad.output
    notes = [line for line in with_bad.stderr.splitlines() if line.startswith("charlstm: ")]
    assert len(notes) == 1 and "'\u2603'" in notes[0] and "left out" in notes[0]
    # The bad line only cost one more "> " prompt: both turns are there, as if it was never typed.
    assert with_bad.stdout.replace("> ", "") == plain.stdout.replace("> ", "")
    assert len(plain.stdout.replace("> ", "")) == 2 * 16


def test_ctrl_c_during_a_continuation_returns_to_the_prompt(run, monkeypatch):
    from charlstm.generation import interactive

    real = interactive.generate

    def interrupted(*args, **kwargs):  # Ctrl-C while the first turn's fourth character is made
        prompt, steps = real(*args, **kwargs)
        monkeypatch.setattr(interactive, "generate", real)

        def stepping():
            for k, step in enumerate(steps):
                if k == 3:
                    raise KeyboardInterrupt
                yield step

        return prompt, stepping()

    monkeypatch.setattr(interactive, "generate", interrupted)
    result = talk(run, "the ", "and ")
    assert result.exit_code == 0, result.output
    first, second, end = result.stdout.split("> ")[1:]
    assert len(first) == 3 + 1 and len(second) == 15 + 1 and end == ""


def test_ctrl_c_at_the_prompt_ends_the_session_with_exit_0(run, monkeypatch):
    ended_by_eof = talk(run, "the ")
    typed = iter(["the "])

    def read_then_ctrl_c(prompt: str = "") -> str:
        print(prompt, end="")
        line = next(typed, None)
        if line is None:
            raise KeyboardInterrupt
        return line

    monkeypatch.setattr("builtins.input", read_then_ctrl_c)
    result = invoke(*TALK[:1], run, *TALK[1:])
    assert result.exit_code == 0, result.output
    assert result.stdout == ended_by_eof.stdout


def test_best_of_prints_the_librarys_choice_whole(run):
    from charlstm.generation.generators import generate_text
    from charlstm.runs.loading import load_model

    result = invoke("generate", run, "--prompt", PROMPT, "--length", "30", "--seed", "5", "--best-of", "3")
    assert result.exit_code == 0, result.output
    expected = generate_text(load_model(run), PROMPT, length=30, seed=5, best_of=3)[0]
    assert result.stdout == PROMPT + expected + "\n"
    assert_one_error(invoke("generate", run, "--prompt", PROMPT, "--best-of", "2", "--stop", "x"), 2,
                     "no stop sequence")
    assert_one_error(invoke("generate", run, "--best-of", "65"), 2, "best_of must be in")
