"use strict";
// The page: the model's facts, the controls, and a generation streamed as it is sampled.
// EventSource cannot POST, so the Server-Sent Events are read from fetch()'s body stream,
// which also lets Stop abort the request (and the server then stops generating).
// A model trained on a list of things (its facts have "items") gets the New items mode: how
// many, a label, new only, and a list of whole items, each marked new or in the training list.

const $ = (id) => document.getElementById(id);
let controller = null; // the AbortController of the generation in flight
let progress = { seed: null, characters: 0, items: 0 };
let itemsInfo = null; // the model's list (labels, training_list), or null for a model of running text

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

// Newlines and spaces would be invisible in the list of known characters; so would a list's
// item start and end symbols, and its label symbols (Unicode's Private Use Area, from U+E000).
const SHOWN_AS = { "\n": "⏎", " ": "␣", "\t": "⇥", "\u0002": "␂", "\u0003": "␃" };
const visible = (ch, labels = []) => {
  const label = labels[ch.codePointAt(0) - 0xe000];
  return label !== undefined ? `<${label}>` : SHOWN_AS[ch] || ch;
};

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
  $("item-count").max = list.limits.max_num_samples;
  $("item-count").value = Math.min(5, list.limits.max_num_samples);
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
  const labels = facts.items ? facts.items.labels : [];
  $("fact-chars").textContent = facts.vocab.map((ch) => visible(ch, labels)).join(" ");
  $("top-k").max = facts.vocab_size;
  $("top-k").dispatchEvent(new Event("input"));
  setItemsMode(facts.items || null);
}

// Show the New items mode for a records model, the text mode for any other.
function setItemsMode(items) {
  itemsInfo = items;
  const on = items !== null;
  $("items-settings").hidden = !on;
  $("output").hidden = on;
  $("items").hidden = !on;
  $("controls-heading").textContent = on ? "Generate new items" : "Generate";
  $("output-heading").textContent = on ? "Items" : "Text";
  $("prompt-label").textContent = on ? "Start of every item (optional)" : "Prompt";
  $("prompt").placeholder = on ? "" : "Alice was";
  $("prompt").rows = on ? 1 : 4;
  const select = $("item-label");
  select.replaceChildren(new Option("any (as often as in training)", ""));
  const labels = on ? items.labels : [];
  labels.forEach((label, k) => select.append(new Option(`${label} (${items.label_counts[k]} in training)`, label)));
  for (const element of document.querySelectorAll(".label-choice")) element.hidden = labels.length === 0;
  const listKnown = on && items.training_list;
  $("new-only").disabled = !listKnown;
  if (!listKnown) $("new-only").checked = false;
  $("new-only-hint").textContent = listKnown
    ? "only items not in the training list"
    : "unavailable: the training list is not with the model";
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
  const minP = Number($("min-p").value);
  if (minP > 0) body.min_p = minP;
  const dry = Number($("dry").value);
  if (dry > 0) body.dry_multiplier = dry; // DRY: a repeat beyond 12 characters is penalised
  const seed = $("seed").value.trim();
  if (seed !== "") body.seed = Number(seed);
  if (itemsInfo) {
    body.items = Number($("item-count").value);
    if ($("item-label").value) body.label = $("item-label").value;
    if ($("new-only").checked) body.new_only = true;
  }
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

// The list's row for item ``index``, made (with those before it) when missing.
function itemRow(index) {
  const list = $("items");
  while (list.children.length <= index) {
    const row = document.createElement("li");
    const text = document.createElement("span");
    text.className = "item-text";
    row.append(text);
    list.append(row);
  }
  return list.children[index];
}

function addTag(row, text, kind) {
  const tag = document.createElement("span");
  tag.className = `tag ${kind}`;
  tag.textContent = text;
  row.append(tag);
}

function onItemsEvent(kind, data) {
  if (kind === "start") {
    progress = { seed: data.seed, characters: 0, items: 0 };
    // Without new_only every item drawn is kept, so its text can show as it comes.
    if (!data.new_only) for (let i = 0; i < data.items; i++) itemRow(i).firstChild.textContent = data.prompt;
  } else if (kind === "text") {
    data.delta.forEach((delta, i) => {
      if (delta) itemRow(i).firstChild.append(delta);
      progress.characters += delta.length;
    });
    $("status").textContent = `${progress.characters} characters…`;
  } else if (kind === "item") {
    const row = itemRow(data.index);
    row.firstChild.textContent = data.text;
    if (data.novel !== null) addTag(row, data.novel ? "new" : "in the list", data.novel ? "new" : "known");
    if (!data.complete) addTag(row, "cut", "cut");
    if (data.label !== null) addTag(row, data.label, "label");
    progress.items += 1;
    $("status").textContent = `${progress.items} items…`;
  } else if (kind === "done") {
    const count = data.items.length;
    let text = `${count} item${count === 1 ? "" : "s"} in ${data.elapsed_s.toFixed(2)} s`;
    if (data.new !== null) text += `; ${data.new} of ${data.drawn} drawn are new`;
    $("status").textContent = `${text} (seed ${progress.seed}).`;
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
  $("items").replaceChildren();
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
    await readEvents(response.body, itemsInfo ? onItemsEvent : onEvent);
  } catch (error) {
    if (error.name === "AbortError") {
      const made = itemsInfo ? `${progress.items} items` : `${progress.characters} characters`;
      $("status").textContent = `Stopped after ${made} (seed ${progress.seed}).`;
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
  bindSlider("min-p", (v) => (v > 0 ? v.toFixed(2) : "off"));
  bindSlider("dry", (v) => (v > 0 ? v.toFixed(1) : "off"));
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
