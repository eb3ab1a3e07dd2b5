"use strict";
// The page: the model's facts, the controls, and a generation streamed as it is sampled.
// EventSource cannot POST, so the Server-Sent Events are read from fetch()'s body stream,
// which also lets Stop abort the request (and the server then stops generating).

const $ = (id) => document.getElementById(id);
let controller = null; // the AbortController of the generation in flight
let progress = { seed: null, characters: 0 };

function errorText(body, status) {
  if (!body || typeof body !== "object" || !body.error) return `request failed (HTTP ${status})`;
  let text = body.error;
  if (body.field && !text.startsWith(body.field)) text = `${body.field}: ${text}`;
  return text;
}

async function getJSON(url) {
  const response = await fetch(url);
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new Error(errorText(body, response.status));
  return body;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function bindSlider(id, format) {
  const input = $(id);
  const update = () => { $(`${id}-value`).textContent = format(Number(input.value)); };
  input.addEventListener("input", update);
  update();
}

// Newlines and spaces would be invisible in the list of known characters.
const visible = (ch) => ({ "\n": "⏎", " ": "␣", "\t": "⇥" })[ch] || ch;

async function loadModels() {
  const list = await getJSON("v1/models");
  const select = $("model");
  for (const name of list.models) {
    const option = document.createElement("option");
    option.value = name;
    option.textContent = name;
    select.append(option);
  }
  select.value = list.default;
  $("length").max = list.limits.max_length;
  $("prompt").maxLength = list.limits.max_prompt_chars;
  $("length").dispatchEvent(new Event("input"));
  await loadFacts();
}

async function loadFacts() {
  const facts = await getJSON(`v1/model?model=${encodeURIComponent($("model").value)}`);
  $("fact-vocab").textContent = `${facts.vocab_size} characters`;
  $("fact-params").textContent = facts.parameters.toLocaleString("en");
  const bits = facts.bits_per_char;
  $("fact-bpc").textContent = bits
    ? `${bits.value.toFixed(3)} (${bits.split === "val" ? "held-out text" : "training text"})`
    : "not measured";
  $("fact-framing").textContent = facts.framing;
  $("fact-chars").textContent = facts.vocab.map(visible).join(" ");
  $("top-k").max = facts.vocab_size;
  $("top-k").dispatchEvent(new Event("input"));
}

function requestBody() {
  const body = {
    model: $("model").value,
    prompt: $("prompt").value,
    length: Number($("length").value),
    temperature: Number($("temperature").value),
    unknown: $("unknown").value,
  };
  const topK = Number($("top-k").value);
  if (topK > 0) body.top_k = topK; // 0 on the slider means "off"
  const topP = Number($("top-p").value);
  if (topP < 1) body.top_p = topP;
  const seed = $("seed").value.trim();
  if (seed !== "") body.seed = Number(seed);
  return body;
}

// Split the SSE body into events: blocks separated by a blank line, "event:" and "data:" lines.
async function readEvents(stream, onEvent) {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let kind = "message";
      let data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) kind = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trimStart();
      }
      onEvent(kind, data ? JSON.parse(data) : null);
    }
  }
}

function onEvent(kind, data) {
  if (kind === "start") {
    progress = { seed: data.seed, characters: 0 };
    $("output-prompt").textContent = data.prompt;
  } else if (kind === "text") {
    $("output-text").append(data.delta[0]);
    progress.characters += data.delta[0].length;
    $("status").textContent = `${progress.characters} characters…`;
  } else if (kind === "done") {
    $("status").textContent =
      `${data.characters} characters in ${data.elapsed_s.toFixed(2)} s (seed ${progress.seed}).`;
  } else if (kind === "error") {
    throw new Error(errorText(data));
  }
}

function setRunning(running) {
  $("generate").disabled = running;
  $("stop").disabled = !running;
  document.body.classList.toggle("running", running);
}

async function generate(event) {
  event.preventDefault();
  if (controller) return; // one generation at a time: Stop first
  controller = new AbortController();
  showError("");
  setRunning(true);
  $("output-prompt").textContent = "";
  $("output-text").textContent = "";
  $("status").textContent = "Generating…";
  try {
    const response = await fetch("v1/generate/stream", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify(requestBody()),
      signal: controller.signal,
    });
    if (!response.ok) {
      const body = await response.json().catch(() => null);
      throw new Error(errorText(body, response.status));
    }
    await readEvents(response.body, onEvent);
  } catch (error) {
    if (error.name === "AbortError") {
      $("status").textContent = `Stopped after ${progress.characters} characters (seed ${progress.seed}).`;
    } else {
      showError(error.message);
      $("status").textContent = "";
    }
  } finally {
    controller = null;
    setRunning(false);
  }
}

function start() {
  bindSlider("temperature", (v) => v.toFixed(2));
  bindSlider("top-k", (v) => (v > 0 ? String(v) : "off"));
  bindSlider("top-p", (v) => (v < 1 ? v.toFixed(2) : "off"));
  bindSlider("length", (v) => `${v} characters`);
  $("controls").addEventListener("submit", generate);
  $("stop").addEventListener("click", () => controller && controller.abort());
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) $("controls").requestSubmit();
  });
  $("model").addEventListener("change", () => loadFacts().catch((error) => showError(error.message)));
  loadModels().catch((error) => showError(`cannot load the model list: ${error.message}`));
}

start();
