// charlstm's stream LSTM in plain JavaScript: no dependencies, runs in a browser and in Node.
// It reads globalThis.CHARLSTM_MODEL (model.js) and sets globalThis.charlstm.
//
// The step is PyTorch's nn.LSTM at inference (dropout off), gate order i, f, g, o:
//   gates = W_ih x + b_ih + W_hh h + b_hh          (4H)
//   c = sigmoid(f) * c + sigmoid(i) * tanh(g);  h = sigmoid(o) * tanh(c)
// then logits = head.weight h + head.bias (V). The input x of layer 0 is embedding[id] (E).
(function (root) {
  "use strict";

  function base64Bytes(text) {
    const binary = root.atob(text);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  }

  // IEEE half -> float: typed arrays have no Float16Array everywhere yet.
  function halfToFloat(bits) {
    const sign = bits & 0x8000 ? -1 : 1;
    const exponent = (bits >> 10) & 0x1f;
    const fraction = bits & 0x3ff;
    if (exponent === 0) return sign * Math.pow(2, -14) * (fraction / 1024);
    if (exponent === 31) return fraction ? NaN : sign * Infinity;
    return sign * Math.pow(2, exponent - 15) * (1 + fraction / 1024);
  }

  // A tensor of model.js: f32 or f16.
  function decodeTensor(tensor) {
    const bytes = base64Bytes(tensor.data);
    if (tensor.dtype === "f32") return new Float32Array(bytes.buffer);
    const halves = new Uint16Array(bytes.buffer);
    const out = new Float32Array(halves.length);
    for (let i = 0; i < halves.length; i++) out[i] = halfToFloat(halves[i]);
    return out;
  }

  const sigmoid = (x) => 1 / (1 + Math.exp(-x));

  // out[r] = bias[r] + sum_j W[r, j] v[j], W row-major (rows, cols). Four rows a pass, each v[j]
  // read once for all four, and two running sums a row, so the JIT overlaps the multiply-adds
  // instead of waiting on one sum: about 2.5x a plain loop in V8 (measured in Node, 2 x 384).
  function matVec(out, bias, W, v, rows, cols) {
    const even = cols - (cols % 2);
    let r = 0;
    for (; r + 3 < rows; r += 4) {
      const a = r * cols, b = a + cols, c = b + cols, d = c + cols;
      let a0 = 0, a1 = 0, b0 = 0, b1 = 0, c0 = 0, c1 = 0, d0 = 0, d1 = 0;
      for (let j = 0; j < even; j += 2) {
        const v0 = v[j], v1 = v[j + 1];
        a0 += W[a + j] * v0; a1 += W[a + j + 1] * v1;
        b0 += W[b + j] * v0; b1 += W[b + j + 1] * v1;
        c0 += W[c + j] * v0; c1 += W[c + j + 1] * v1;
        d0 += W[d + j] * v0; d1 += W[d + j + 1] * v1;
      }
      if (even < cols) {
        const j = even, v0 = v[j];
        a0 += W[a + j] * v0; b0 += W[b + j] * v0; c0 += W[c + j] * v0; d0 += W[d + j] * v0;
      }
      out[r] = bias[r] + (a0 + a1);
      out[r + 1] = bias[r + 1] + (b0 + b1);
      out[r + 2] = bias[r + 2] + (c0 + c1);
      out[r + 3] = bias[r + 3] + (d0 + d1);
    }
    for (; r < rows; r++) {  // the last rows % 4
      let s = 0;
      for (let j = 0, a = r * cols; j < cols; j++) s += W[a + j] * v[j];
      out[r] = bias[r] + s;
    }
  }

  // [W_ih | W_hh] row by row, so a layer's gates are one pass over [x, h].
  function joinRows(Wih, Whh, rows, inputs, H) {
    const W = new Float32Array(rows * (inputs + H));
    for (let r = 0; r < rows; r++) {
      W.set(Wih.subarray(r * inputs, (r + 1) * inputs), r * (inputs + H));
      W.set(Whh.subarray(r * H, (r + 1) * H), r * (inputs + H) + inputs);
    }
    return W;
  }

  function Model(spec) {
    const t = (name) => decodeTensor(spec.tensors[name]);
    this.spec = spec;
    this.vocab = spec.vocab;
    this.index = new Map(spec.vocab.map((ch, i) => [ch, i]));
    this.H = spec.hidden_size;
    this.E = spec.embedding_size;
    this.V = spec.vocab.length;
    this.L = spec.num_layers;
    this.embedding = t("embedding.weight");
    this.layers = [];
    for (let k = 0; k < this.L; k++) {
      const inputs = k === 0 ? this.E : this.H, bih = t(`rnn.bias_ih_l${k}`), bhh = t(`rnn.bias_hh_l${k}`);
      this.layers.push({
        W: joinRows(t(`rnn.weight_ih_l${k}`), t(`rnn.weight_hh_l${k}`), 4 * this.H, inputs, this.H),
        bias: Float64Array.from(bih, (b, r) => b + bhh[r]),  // as PyTorch adds them, in float
        inputs, xh: new Float64Array(inputs + this.H),
      });
    }
    this.headW = t("head.weight");
    this.headB = t("head.bias");
    this.gates = new Float64Array(4 * this.H);
  }

  Model.prototype.initState = function () {
    const zeros = () => new Float64Array(this.H);
    return { h: this.layers.map(zeros), c: this.layers.map(zeros) };
  };

  // One character in, the next character's logits (V) out; ``state`` is updated in place.
  Model.prototype.step = function (state, id) {
    const H = this.H, gates = this.gates;
    let x = this.embedding.subarray(id * this.E, (id + 1) * this.E);
    for (let k = 0; k < this.L; k++) {
      const layer = this.layers[k], h = state.h[k], c = state.c[k], xh = layer.xh;
      xh.set(x, 0);
      xh.set(h, layer.inputs);
      matVec(gates, layer.bias, layer.W, xh, 4 * H, layer.inputs + H);
      for (let j = 0; j < H; j++) {
        c[j] = sigmoid(gates[H + j]) * c[j] + sigmoid(gates[j]) * Math.tanh(gates[2 * H + j]);
        h[j] = sigmoid(gates[3 * H + j]) * Math.tanh(c[j]);
      }
      x = h;
    }
    const logits = new Float64Array(this.V);
    matVec(logits, this.headB, this.headW, x, this.V, H);
    return logits;
  };

  // The prompt as training cleaned text (newlines, NFC, lowercase), then ids; unknown
  // characters are dropped, as ``unknown drop`` does in Python.
  Model.prototype.encode = function (text) {
    if (this.spec.normalize) text = text.replace(/\r\n?/g, "\n").normalize("NFC");
    if (this.spec.lowercase) text = text.toLowerCase();
    const ids = [];
    for (const ch of text) if (this.index.has(ch)) ids.push(this.index.get(ch));
    return ids;
  };

  // Read ids from ``state`` (fresh when omitted); returns {state, logits} after the last one.
  Model.prototype.read = function (ids, state) {
    state = state || this.initState();
    let logits = null;
    for (const id of ids) logits = this.step(state, id);
    return { state, logits };
  };

  // mulberry32: a small seeded PRNG, uniform in [0, 1).
  function mulberry32(seed) {
    let a = seed >>> 0;
    return function () {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  function argmax(values) {
    let best = 0;
    for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
    return best;
  }

  // DRY ("don't repeat yourself"), as charlstm's RepeatPenalty: for each earlier place of the last
  // character, how far the text before it matches the text now (k); the character that followed
  // there would make the repeat k + 1 long and loses multiplier * base^(k - allowed) once k >= allowed.
  const DRY_WINDOW = 512;
  function repeatPenalties(history, multiplier, base, allowed) {
    const h = history.slice(-DRY_WINDOW), n = h.length, longest = new Map();
    for (let j = n - 2; j >= 0; j--) {
      if (h[j] !== h[n - 1]) continue;
      let k = 1;
      while (k <= j && h[j - k] === h[n - 1 - k]) k++;
      const next = h[j + 1];
      if (k > (longest.get(next) || 0)) longest.set(next, k);
    }
    const penalties = new Map();
    for (const [id, k] of longest) if (k >= allowed) penalties.set(id, multiplier * Math.pow(base, k - allowed));
    return penalties;
  }

  // One step's choice, as charlstm's Sampler: the repetition control, the temperature, then top-k,
  // top-p and min-p, then the draw. ``history``: the ids so far (prompt included), for DRY only.
  function choose(logits, options, random, history) {
    const temperature = options.temperature === undefined ? 1 : options.temperature;
    if (options.dryMultiplier && history) {
      const penalties = repeatPenalties(history, options.dryMultiplier, options.dryBase || 1.75,
                                        options.dryAllowedLength || 12);
      if (penalties.size) {
        logits = Float64Array.from(logits);
        for (const [id, penalty] of penalties) logits[id] -= penalty;
      }
    }
    if (options.greedy || temperature <= 1e-4) return argmax(logits);
    const best = logits[argmax(logits)];
    const order = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a]);
    let probs = order.map((i) => Math.exp((logits[i] - best) / temperature));  // sorted, best first
    let keep = options.topK ? Math.min(options.topK, probs.length) : probs.length;
    if (options.topP !== undefined && options.topP !== null && options.topP < 1) {
      const total = probs.slice(0, keep).reduce((a, b) => a + b, 0);
      let before = 0;
      for (let i = 0; i < keep; i++) {
        // drop a character once the ones before it reach top_p; the first always stays
        if (i > 0 && before / total >= options.topP) { keep = i; break; }
        before += probs[i];
      }
    }
    if (options.minP) {  // p >= min_p * p_max; what top-k and top-p kept keeps its ratios
      let i = 1;
      while (i < keep && probs[i] >= options.minP * probs[0]) i++;
      keep = i;
    }
    probs = probs.slice(0, keep);
    let u = random() * probs.reduce((a, b) => a + b, 0);
    for (let i = 0; i < keep; i++) {
      u -= probs[i];
      if (u < 0) return order[i];
    }
    return order[keep - 1];
  }

  let loaded = null;
  function model() {
    if (!loaded) {
      if (!root.CHARLSTM_MODEL) throw new Error("no model: load model.js before runtime.js");
      loaded = new Model(root.CHARLSTM_MODEL);
    }
    return loaded;
  }

  // Yield to the page (to draw, to take a click on Stop). A browser clamps a nested setTimeout(0) to
  // 4 ms, so the text is handed over (and the page yielded to) every 50 ms: 7% of the time, not the
  // half that yielding every few characters cost. (A MessageChannel yield is not clamped, but
  // Chromium then put off the click on Stop.)
  const pause = () => new Promise((resolve) => setTimeout(resolve, 0));
  const now = () => performance.now();
  const HAND_OVER_MS = 50;

  function seeded(options) {
    const seed = options.seed === undefined || options.seed === null
      ? Math.floor(Math.random() * 4294967296) : options.seed;
    return mulberry32(seed);
  }

  // Continue ``prompt`` (empty: the model's default start). Options: length (200), temperature (1),
  // topK, topP, minP, dryMultiplier (off), dryBase (1.75), dryAllowedLength (12), greedy, seed (random
  // when absent); and for pages onText(chunk) called as text is made, and signal (an AbortSignal) to
  // stop early. Resolves to the continuation's text.
  async function generate(prompt, options) {
    options = options || {};
    const m = model();
    if (m.spec.items) throw new Error("a model of a list makes whole items: call generateItems");
    let ids = m.encode(prompt || "");
    if (ids.length === 0) ids = m.encode(m.spec.default_prompt);
    if (ids.length === 0) throw new Error("the prompt has no character the model knows");
    const length = options.length === undefined ? 200 : options.length;
    const random = seeded(options);
    const history = options.dryMultiplier ? ids.slice() : null;
    let { state, logits } = m.read(ids);
    let text = "", pending = "", handed = 0;
    for (let n = 0; n < length; n++) {
      if (options.signal && options.signal.aborted) break;
      const id = choose(logits, options, random, history);
      if (history) history.push(id);
      pending += m.vocab[id];
      // Hand the page its text and let it draw: the first character at once, then every 50 ms.
      if (n === 0 || n === length - 1 || now() - handed >= HAND_OVER_MS) {
        text += pending;
        if (options.onText) options.onText(pending);
        pending = "";
        await pause();
        handed = now();
      }
      if (n < length - 1) logits = m.step(state, id);
    }
    if (pending && options.onText) options.onText(pending);  // stopped between hand-overs
    return text + pending;
  }

  const END_ID = 1;  // every list model's end symbol; its start symbols are spec.items.starts

  // A model of a list: ``count`` (10) whole items, each from its label's start symbol and ``prefix``,
  // until the end symbol or ``maxChars`` (200) characters. ``label``: one of spec.items.labels, else
  // each item's label is drawn as often as in training. Sampling options as generate's; onItem(item)
  // is called as each is made. Resolves to [{text, label, complete, novel}]; novel is whether the
  // text is not in the training list, null unless the list was exported (--include-list).
  async function generateItems(options) {
    options = options || {};
    const m = model(), info = m.spec.items;
    if (!info) throw new Error("generateItems needs a model of a list: this one continues text");
    const labels = info.labels, counts = info.label_counts;
    if (options.label !== undefined && options.label !== null && !labels.includes(options.label)) {
      throw new Error(`no label ${JSON.stringify(options.label)}; the model's: ${labels.join(", ")}`);
    }
    const random = seeded(options), known = m.spec.list ? new Set(m.spec.list) : null;
    const prefix = options.prefix || "", prefixIds = m.encode(prefix);
    const hidden = new Set([0, ...info.starts.map((ch) => m.index.get(ch))]);
    const total = counts.reduce((a, b) => a + b, 0);
    const count = options.count === undefined ? 10 : options.count;
    const maxChars = options.maxChars === undefined ? 200 : options.maxChars;
    const items = [];
    for (let n = 0; n < count && !(options.signal && options.signal.aborted); n++) {
      let label = labels.length ? options.label : null;
      if (labels.length && (label === undefined || label === null)) {  // drawn by training counts
        let u = random() * total, k = 0;
        while (k < labels.length - 1 && (u -= counts[k]) >= 0) k++;
        label = labels[k];
      }
      const start = m.index.get(info.starts[labels.length ? labels.indexOf(label) : 0]);
      const ids = [start, ...prefixIds];
      const history = options.dryMultiplier ? ids.slice() : null;
      let { state, logits } = m.read(ids);
      let text = prefix, complete = false;
      for (let step = 0; step < maxChars; step++) {
        const id = choose(logits, options, random, history);
        if (id === END_ID) { complete = true; break; }
        if (history) history.push(id);
        if (!hidden.has(id)) text += m.vocab[id];
        logits = m.step(state, id);
      }
      const item = { text, label, complete, novel: known ? !known.has(text) : null };
      items.push(item);
      if (options.onItem) options.onItem(item);
      await pause();
    }
    return items;
  }

  root.charlstm = { Model, model, generate, generateItems, choose, repeatPenalties, mulberry32, decodeTensor };
})(globalThis);
