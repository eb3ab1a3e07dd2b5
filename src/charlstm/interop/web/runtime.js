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

  function decodeTensor(tensor, dtype) {
    const bytes = base64Bytes(tensor.data);
    if (dtype === "f32") return new Float32Array(bytes.buffer);
    const halves = new Uint16Array(bytes.buffer);
    const out = new Float32Array(halves.length);
    for (let i = 0; i < halves.length; i++) out[i] = halfToFloat(halves[i]);
    return out;
  }

  const sigmoid = (x) => 1 / (1 + Math.exp(-x));

  // out[r] = bias[r] + sum_j W[r, j] v[j], W row-major (rows, cols); accumulates into out.
  function matVecAdd(out, W, v, rows, cols) {
    for (let r = 0; r < rows; r++) {
      let sum = 0;
      const base = r * cols;
      for (let j = 0; j < cols; j++) sum += W[base + j] * v[j];
      out[r] += sum;
    }
  }

  function Model(spec) {
    const t = (name) => decodeTensor(spec.tensors[name], spec.dtype);
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
      this.layers.push({
        Wih: t(`rnn.weight_ih_l${k}`), Whh: t(`rnn.weight_hh_l${k}`),
        bih: t(`rnn.bias_ih_l${k}`), bhh: t(`rnn.bias_hh_l${k}`), inputs: k === 0 ? this.E : this.H,
      });
    }
    this.headW = t("head.weight");
    this.headB = t("head.bias");
  }

  Model.prototype.initState = function () {
    const zeros = () => new Float64Array(this.H);
    return { h: this.layers.map(zeros), c: this.layers.map(zeros) };
  };

  // One character in, the next character's logits (V) out; ``state`` is updated in place.
  Model.prototype.step = function (state, id) {
    const H = this.H;
    let x = this.embedding.subarray(id * this.E, (id + 1) * this.E);
    const gates = new Float64Array(4 * H);
    this.layers.forEach((layer, k) => {
      const h = state.h[k], c = state.c[k];
      for (let r = 0; r < 4 * H; r++) gates[r] = layer.bih[r] + layer.bhh[r];
      matVecAdd(gates, layer.Wih, x, 4 * H, layer.inputs);
      matVecAdd(gates, layer.Whh, h, 4 * H, H);
      for (let j = 0; j < H; j++) {
        c[j] = sigmoid(gates[H + j]) * c[j] + sigmoid(gates[j]) * Math.tanh(gates[2 * H + j]);
        h[j] = sigmoid(gates[3 * H + j]) * Math.tanh(c[j]);
      }
      x = h;
    });
    const logits = Float64Array.from(this.headB);
    matVecAdd(logits, this.headW, x, this.V, H);
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

  // One step's choice, as charlstm's Sampler: temperature, then top-k, then top-p, then the draw.
  function choose(logits, options, random) {
    const temperature = options.temperature === undefined ? 1 : options.temperature;
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

  const pause = () => new Promise((resolve) => setTimeout(resolve, 0));

  // Continue ``prompt`` (empty: the model's default start). Options: length (200), temperature (1),
  // topK, topP, greedy, seed (random when absent); and for pages onText(chunk) called as text is
  // made, and signal (an AbortSignal) to stop early. Resolves to the continuation's text.
  async function generate(prompt, options) {
    options = options || {};
    const m = model();
    let ids = m.encode(prompt || "");
    if (ids.length === 0) ids = m.encode(m.spec.default_prompt);
    if (ids.length === 0) throw new Error("the prompt has no character the model knows");
    const length = options.length === undefined ? 200 : options.length;
    const seed = options.seed === undefined || options.seed === null
      ? Math.floor(Math.random() * 4294967296) : options.seed;
    const random = mulberry32(seed);
    let { state, logits } = m.read(ids);
    let text = "", pending = "";
    for (let n = 0; n < length; n++) {
      if (options.signal && options.signal.aborted) break;
      const id = choose(logits, options, random);
      pending += m.vocab[id];
      logits = m.step(state, id);
      if (pending.length >= 8 || n === length - 1) {  // hand the page the text, let it draw
        text += pending;
        if (options.onText) options.onText(pending);
        pending = "";
        await pause();
      }
    }
    if (pending && options.onText) options.onText(pending);  // stopped between hand-overs
    return text + pending;
  }

  root.charlstm = { Model, model, generate, choose, mulberry32, decodeTensor };
})(globalThis);
