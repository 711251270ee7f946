// polyfuse playground: sends a chat to POST /v1/fusion/events and draws the fusion's events.
//
// Every piece of model output is untrusted: it is only ever set with textContent or text
// nodes, never parsed as HTML. The page stores nothing on the server: the API key lives in
// sessionStorage, recent runs and prices in localStorage.
"use strict";

(() => {
  const KEY_STORAGE = "polyfuse.playground.apiKey";
  const RUNS_STORAGE = "polyfuse.playground.runs";
  const PRICES_STORAGE = "polyfuse.playground.prices";
  const MAX_RUNS = 12;
  const EVENTS_URL = "/v1/fusion/events";
  const MODELS_URL = "/v1/models";

  const $ = (id) => document.getElementById(id);
  const ui = {
    apiKey: $("api-key"),
    compare: $("compare"),
    presetA: $("preset-a"),
    presetB: $("preset-b"),
    presetBLabel: $("preset-b-label"),
    reload: $("reload-presets"),
    system: $("system"),
    form: $("prompt-form"),
    prompt: $("prompt"),
    temperature: $("temperature"),
    maxTokens: $("max-tokens"),
    send: $("send"),
    stop: $("stop"),
    newChat: $("new-chat"),
    prices: $("prices"),
    status: $("status"),
    panes: $("panes"),
    history: $("history-list"),
    clearHistory: $("clear-history"),
  };

  // ---------------------------------------------------------------- small DOM helpers

  /** An element with attributes and children; strings become text nodes (never HTML). */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "text") node.textContent = String(value);
      else if (name === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  const fmtSeconds = (s) => (typeof s === "number" ? `${s.toFixed(2)} s` : "–");
  const fmtInt = (n) => (typeof n === "number" ? n.toLocaleString("en-US") : "–");
  const fmtUsd = (usd) => (usd === null ? "–" : `$${usd.toFixed(usd < 0.01 ? 6 : 4)}`);

  function showStatus(message, kind) {
    ui.status.textContent = message;
    ui.status.dataset.kind = kind || "info";
    ui.status.hidden = !message;
  }

  // ---------------------------------------------------------------- API key and requests

  ui.apiKey.value = sessionStorage.getItem(KEY_STORAGE) || "";
  ui.apiKey.addEventListener("input", () => {
    sessionStorage.setItem(KEY_STORAGE, ui.apiKey.value);
  });

  function headers(json) {
    const h = {};
    if (json) h["Content-Type"] = "application/json";
    const key = ui.apiKey.value.trim();
    if (key) h.Authorization = `Bearer ${key}`;
    return h;
  }

  /** The server's error message from a non-2xx response (OpenAI error shape), else a summary. */
  async function errorMessage(response) {
    let text = "";
    try {
      text = await response.text();
      const body = JSON.parse(text);
      if (body && body.error && body.error.message) {
        return `${response.status}: ${body.error.message}`;
      }
    } catch (_) {
      // not JSON: fall through to the raw status
    }
    return `${response.status} ${response.statusText}${text ? `: ${text.slice(0, 200)}` : ""}`;
  }

  // ---------------------------------------------------------------- presets

  async function loadPresets() {
    let response;
    try {
      response = await fetch(MODELS_URL, { headers: headers(false) });
    } catch (err) {
      showStatus(`cannot reach the server: ${err.message}`, "error");
      return;
    }
    if (!response.ok) {
      showStatus(await errorMessage(response), "error");
      return;
    }
    const body = await response.json();
    const ids = (body.data || []).map((m) => m.id);
    for (const select of [ui.presetA, ui.presetB]) {
      const previous = select.value;
      select.replaceChildren(...ids.map((id) => el("option", { value: id, text: id })));
      if (ids.includes(previous)) select.value = previous;
    }
    if (ids.length > 1 && ui.presetB.value === ui.presetA.value) ui.presetB.value = ids[1];
    showStatus(ids.length ? "" : "this server offers no preset", ids.length ? "info" : "error");
  }

  ui.reload.addEventListener("click", loadPresets);
  ui.apiKey.addEventListener("change", loadPresets);
  ui.compare.addEventListener("change", () => {
    ui.presetBLabel.hidden = !ui.compare.checked;
    resetConversation();
  });

  // ---------------------------------------------------------------- prices and cost

  ui.prices.value = localStorage.getItem(PRICES_STORAGE) || "";
  ui.prices.addEventListener("input", () => localStorage.setItem(PRICES_STORAGE, ui.prices.value));

  /** name -> {input, output} in USD per 1M tokens, from "name=input/output" lines. */
  function prices() {
    const table = new Map();
    for (const line of ui.prices.value.split("\n")) {
      const match = line.trim().match(/^([^=\s]+)\s*=\s*([\d.]+)\s*\/\s*([\d.]+)$/);
      if (match) table.set(match[1], { input: Number(match[2]), output: Number(match[3]) });
    }
    return table;
  }

  /** Cost of calls [{backend, model, usage}]: {usd (null if none priced), unpriced: Set}. */
  function costOf(calls, table) {
    let usd = null;
    const unpriced = new Set();
    for (const call of calls) {
      const usage = call.usage || {};
      if (!usage.calls) continue;
      const price = table.get(call.backend) || table.get(call.model);
      if (!price) {
        unpriced.add(call.model || call.backend);
        continue;
      }
      usd = (usd || 0) + (usage.prompt_tokens * price.input + usage.completion_tokens * price.output) / 1e6;
    }
    return { usd, unpriced };
  }

  // ---------------------------------------------------------------- conversation state

  // One conversation per pane slot ("a", "b"): the turns sent so far and the fused replies.
  const conversations = { a: [], b: [] };
  let running = [];

  function resetConversation() {
    conversations.a = [];
    conversations.b = [];
    ui.panes.replaceChildren();
    showStatus("", "info");
  }
  ui.newChat.addEventListener("click", resetConversation);

  function requestMessages(slot, userText) {
    const messages = [];
    const system = ui.system.value.trim();
    if (system) messages.push({ role: "system", content: system });
    messages.push(...conversations[slot], { role: "user", content: userText });
    return messages;
  }

  function requestBody(model, messages) {
    const body = { model, messages };
    const temperature = ui.temperature.value.trim();
    const maxTokens = ui.maxTokens.value.trim();
    if (temperature !== "") body.temperature = Number(temperature);
    if (maxTokens !== "") body.max_tokens = Number(maxTokens);
    return body;
  }

  // ---------------------------------------------------------------- one pane per run

  const STATUS_LABELS = {
    pending: "waiting",
    running: "running",
    ok: "ok",
    failed: "failed",
    cancelled: "cancelled",
  };

  class Pane {
    constructor(model, slot, transcript) {
      this.model = model;
      this.slot = slot;
      this.columns = new Map();
      this.fusedText = document.createTextNode("");
      this.state = el("span", { class: "run-state", "data-testid": "run-state", text: "starting" });
      this.method = el("span", { class: "method", "data-testid": "method" });
      this.error = el("p", { class: "pane-error", role: "alert", "data-testid": "pane-error", hidden: true });
      this.candidates = el("div", { class: "candidates", "data-testid": "candidates" });
      this.aggState = el("span", { class: "agg-state", "data-testid": "agg-state" });
      this.fused = el("div", { class: "fused-text", "data-testid": "fused" }, this.fusedText);
      this.details = el("section", { class: "details", "data-testid": "details", hidden: true });
      this.root = el(
        "article",
        { class: "pane", "data-testid": "pane", dataset: { model } },
        el("h2", { class: "pane-title" }, el("span", { class: "preset", text: model }), this.method, this.state),
        this.transcript(transcript),
        this.error,
        this.candidates,
        el("section", { class: "fused" }, el("h3", {}, "Fused answer ", this.aggState), this.fused),
        this.details,
      );
    }

    transcript(turns) {
      const box = el("div", { class: "transcript", "data-testid": "transcript" });
      for (const turn of turns) {
        box.append(el("div", { class: `turn ${turn.role}` }, el("b", { text: `${turn.role}: ` }), turn.content || ""));
      }
      return box;
    }

    setState(text, kind) {
      this.state.textContent = text;
      this.state.dataset.kind = kind;
    }

    fail(message) {
      this.error.textContent = message;
      this.error.hidden = false;
      this.setState("failed", "failed");
    }

    column(index, backend, model) {
      let col = this.columns.get(index);
      if (col) return col;
      col = {
        status: el("span", { class: "badge", "data-testid": "cand-status", dataset: { status: "pending" }, text: "waiting" }),
        latency: el("dd", { "data-testid": "cand-latency", text: "–" }),
        ttft: el("dd", { "data-testid": "cand-ttft", text: "–" }),
        tokens: el("dd", { "data-testid": "cand-tokens", text: "0" }),
        error: el("p", { class: "cand-error", "data-testid": "cand-error", hidden: true }),
        text: document.createTextNode(""),
        chunks: 0,
        started: null,
      };
      col.modelLabel = el("span", { class: "cand-model", "data-testid": "cand-model", text: model || backend || "" });
      col.body = el("div", { class: "cand-text", "data-testid": "cand-text" }, col.text);
      col.root = el(
        "div",
        { class: `candidate c${index % 8}`, "data-testid": "candidate", dataset: { index: String(index) } },
        el("div", { class: "cand-head" }, el("span", { class: "cand-label", text: `#${index}` }), col.modelLabel, col.status),
        el("dl", { class: "cand-stats" },
          el("div", {}, el("dt", { text: "latency" }), col.latency),
          el("div", {}, el("dt", { text: "TTFT" }), col.ttft),
          el("div", {}, el("dt", { text: "tokens" }), col.tokens)),
        col.error,
        col.body,
      );
      this.columns.set(index, col);
      this.candidates.append(col.root);
      return col;
    }

    setStatus(col, status, label) {
      col.status.dataset.status = status;
      col.status.textContent = label || STATUS_LABELS[status] || status;
      col.root.dataset.status = status;
    }

    // -- the events, one method per type

    "fusion.started"(data) {
      const rules = [];
      if (data.quorum) rules.push(`quorum ${data.quorum}`);
      if (data.deadline) rules.push(`deadline ${data.deadline} s`);
      this.method.textContent = [data.method, ...rules].join(" · ");
      this.setState("sampling", "running");
      for (const c of data.candidates) this.column(c.index, c.backend, c.model);
    }

    "candidate.started"(data) {
      const col = this.column(data.index, data.backend, data.model);
      col.started = performance.now();
      this.setStatus(col, "running");
    }

    "candidate.token"(data) {
      const col = this.column(data.index);
      if (col.chunks === 0 && col.started !== null) {
        col.ttft.textContent = fmtSeconds((performance.now() - col.started) / 1000);
      }
      col.chunks += 1;
      col.text.appendData(data.delta);
      col.tokens.textContent = `~${col.chunks}`;
    }

    finishCandidate(candidate) {
      const col = this.column(candidate.index, candidate.backend, candidate.model);
      if (candidate.model) col.modelLabel.textContent = candidate.model;
      col.latency.textContent = fmtSeconds(candidate.latency_s);
      if (candidate.ttft_s !== null && candidate.ttft_s !== undefined) col.ttft.textContent = fmtSeconds(candidate.ttft_s);
      const usage = candidate.usage || {};
      col.tokens.textContent = usage.calls_without_usage ? "unknown" : fmtInt(usage.completion_tokens);
      return col;
    }

    "candidate.finished"(data) {
      const candidate = data.candidate;
      const col = this.finishCandidate(candidate);
      let text = candidate.content || "";
      if (candidate.tool_calls && candidate.tool_calls.length) {
        text += (text ? "\n" : "") + JSON.stringify(candidate.tool_calls, null, 2);
      }
      col.text.data = text;
      this.setStatus(col, "ok");
    }

    "candidate.failed"(data) {
      const candidate = data.candidate;
      const col = this.finishCandidate(candidate);
      const error = candidate.error || {};
      col.error.textContent = `${error.type || "error"}: ${error.message || "failed"}`;
      col.error.hidden = false;
      this.setStatus(col, "failed");
    }

    "candidate.cancelled"(data) {
      const col = this.finishCandidate(data.candidate);
      col.tokens.textContent = "unknown";
      this.setStatus(col, "cancelled", `cancelled (${data.reason})`);
      const error = data.candidate.error || {};
      col.error.textContent = error.message || `cancelled: ${data.reason}`;
      col.error.hidden = false;
    }

    "aggregation.started"(data) {
      this.setState("aggregating", "running");
      this.aggState.textContent = `${data.method} over ${data.candidates} candidate${data.candidates === 1 ? "" : "s"}`;
    }

    "fused.token"(data) {
      this.fusedText.appendData(data.delta);
    }

    "answer.restarted"(data) {
      this.fusedText.data = "";
      this.aggState.textContent = `restarted: ${data.reason}`;
    }

    "error"(data) {
      const error = data.error || {};
      this.fail(`${data.status || ""} ${error.message || "the fusion failed"}`.trim());
    }

    "done"(data) {
      const result = data.result;
      this.result = result;
      this.setState("done", "ok");
      for (const candidate of result.candidates) {
        // Candidates whose events were not seen (a stored run): fill the columns now.
        const col = this.columns.get(candidate.index);
        if (!col || col.status.dataset.status === "pending" || col.status.dataset.status === "running") {
          const type = candidate.status === "ok" ? "candidate.finished" : candidate.status === "cancelled" ? "candidate.cancelled" : "candidate.failed";
          const reason = (candidate.error && /deadline/.test(candidate.error.message || "")) ? "deadline" : "quorum";
          this[type]({ candidate, reason });
        }
      }
      this.renderAnswer(data.passages, result);
      this.renderDetails(result);
      if (!this.aggState.textContent) this.aggState.textContent = result.aggregation.method;
    }

    renderAnswer(passages, result) {
      const content = (result.message && result.message.content) || "";
      const box = el("div", { class: "fused-text", "data-testid": "fused" });
      for (const passage of passages || []) {
        const marks = el("sup", { class: "sources", "data-testid": "passage-sources" });
        for (const index of passage.sources) marks.append(el("span", { class: `src c${index % 8}`, text: `#${index}` }));
        if (!passage.sources.length) marks.append(el("span", { class: "src none", text: "new" }));
        // The marks go right after the passage's words, before the space that ends it.
        const words = passage.text.replace(/\s+$/, "");
        box.append(el("span", { class: "passage", "data-testid": "passage" }, words, marks), passage.text.slice(words.length));
      }
      if (!passages || !passages.length) box.append(content);
      const calls = (result.message && result.message.tool_calls) || [];
      if (calls.length) box.append(el("pre", { class: "tool-calls", text: JSON.stringify(calls, null, 2) }));
      this.fused.replaceWith(box);
      this.fused = box;
    }

    renderDetails(result) {
      const aggregation = result.aggregation;
      const contributions = aggregation.contributions || {};
      const scores = aggregation.scores || {};
      const rows = result.candidates.map((c) => {
        const share = contributions[String(c.index)];
        const cell = share === undefined
          ? el("td", { text: aggregation.selected === c.index ? "selected" : "–" })
          : el("td", {}, el("meter", { min: "0", max: "1", value: String(share) }), ` ${Math.round(share * 100)}%`);
        const score = scores[String(c.index)];
        return el("tr", { "data-testid": "contribution-row" },
          el("td", { text: `#${c.index}` }), el("td", { text: c.model || c.backend }),
          el("td", { text: c.status }), cell,
          el("td", { text: score === undefined || score === null ? "–" : String(score) }));
      });
      const contributionTable = el("table", { class: "contributions", "data-testid": "contributions" },
        el("thead", {}, el("tr", {}, ...["candidate", "model", "status", "contribution", "score"].map((h) => el("th", { text: h })))),
        el("tbody", {}, ...rows));

      const facts = el("dl", { class: "facts", "data-testid": "aggregation" },
        el("dt", { text: "method" }), el("dd", { "data-testid": "agg-method", text: aggregation.method }),
        el("dt", { text: "selected" }), el("dd", { text: aggregation.selected === null ? "–" : `#${aggregation.selected}` }),
        el("dt", { text: "fallback" }), el("dd", { "data-testid": "fallback", text: aggregation.fallback_reason || "none" }),
        el("dt", { text: "latency" }), el("dd", { text: fmtSeconds(result.latency_s) }),
        el("dt", { text: "TTFT" }), el("dd", { text: fmtSeconds(result.ttft_s) }));
      for (const note of aggregation.notes || []) facts.append(el("dt", { text: "note" }), el("dd", { text: note }));

      this.details.replaceChildren(
        el("h3", { text: "Where the answer came from" }), contributionTable, facts,
        el("h3", { text: "Usage and cost by role" }), this.usageTable(result));
      this.details.hidden = false;
    }

    usageTable(result) {
      const table = prices();
      const candidateCalls = result.candidates.map((c) => ({ backend: c.backend, model: c.model, usage: c.usage }));
      const calls = result.aggregation.calls || [];
      const byRole = {
        candidates: candidateCalls.concat(calls.filter((c) => c.role === "proposer")),
        aggregator: calls.filter((c) => c.role === "aggregator"),
        judge: calls.filter((c) => c.role === "judge"),
      };
      const unpriced = new Set();
      let totalUsd = null;
      const rows = [];
      for (const role of ["candidates", "aggregator", "judge", "total"]) {
        const usage = result.usage[role];
        let cost;
        if (role === "total") {
          cost = { usd: totalUsd, unpriced };
        } else {
          cost = costOf(byRole[role], table);
          for (const name of cost.unpriced) unpriced.add(name);
          if (cost.usd !== null) totalUsd = (totalUsd || 0) + cost.usd;
        }
        const incomplete = usage.calls_without_usage ? ` (${usage.calls_without_usage} without usage)` : "";
        rows.push(el("tr", { "data-testid": `usage-${role}` },
          el("th", { text: role }), el("td", { text: `${fmtInt(usage.calls)}${incomplete}` }),
          el("td", { text: fmtInt(usage.prompt_tokens) }), el("td", { text: fmtInt(usage.completion_tokens) }),
          el("td", { text: fmtInt(usage.total_tokens) }), el("td", { text: fmtUsd(cost.usd) })));
      }
      const wrap = el("div", {},
        el("table", { class: "usage", "data-testid": "usage" },
          el("thead", {}, el("tr", {}, ...["role", "calls", "prompt", "completion", "total", "cost"].map((h) => el("th", { text: h })))),
          el("tbody", {}, ...rows)));
      if (unpriced.size) {
        wrap.append(el("p", { class: "hint", text: `no price for: ${[...unpriced].join(", ")} (add one under Prices)` }));
      }
      return wrap;
    }

    handle(data) {
      const handler = this[data.type];
      if (typeof handler === "function") handler.call(this, data);
    }
  }

  // ---------------------------------------------------------------- the SSE stream

  /** Calls onEvent(data) for each `data:` JSON of a text/event-stream response body. */
  async function readEvents(response, onEvent) {
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
        if (data) onEvent(JSON.parse(data));
      }
    }
  }

  async function run(pane, body, controller) {
    let response;
    try {
      response = await fetch(EVENTS_URL, {
        method: "POST",
        headers: headers(true),
        body: JSON.stringify(body),
        signal: controller.signal,
      });
    } catch (err) {
      pane.fail(`cannot reach the server: ${err.message}`);
      return null;
    }
    if (!response.ok) {
      const message = await errorMessage(response);
      pane.fail(message);
      showStatus(message, "error");
      return null;
    }
    let done = null;
    let failed = false;
    try {
      await readEvents(response, (data) => {
        if (data.type === "done") done = data;
        if (data.type === "error") failed = true;
        pane.handle(data);
      });
    } catch (err) {
      pane.fail(err.name === "AbortError" ? "stopped" : `the stream broke: ${err.message}`);
      return null;
    }
    if (!done && !failed) pane.fail("the stream ended before the fusion was done");
    return done;
  }

  async function send(event) {
    event.preventDefault();
    const text = ui.prompt.value.trim();
    if (!text || running.length) return;
    const slots = ui.compare.checked ? ["a", "b"] : ["a"];
    const models = { a: ui.presetA.value, b: ui.presetB.value };
    if (slots.some((s) => !models[s])) {
      showStatus("pick a preset first (none loaded: check the API key, then Reload presets)", "error");
      return;
    }
    showStatus("", "info");
    ui.panes.replaceChildren();
    ui.panes.dataset.count = String(slots.length);
    ui.send.disabled = true;
    ui.stop.disabled = false;
    const controller = new AbortController();
    running = [controller];
    const jobs = slots.map(async (slot) => {
      const messages = requestMessages(slot, text);
      const pane = new Pane(models[slot], slot, [...conversations[slot], { role: "user", content: text }]);
      ui.panes.append(pane.root);
      const done = await run(pane, requestBody(models[slot], messages), controller);
      if (done) {
        const answer = done.result.message.content || "";
        conversations[slot] = messages.filter((m) => m.role !== "system").concat({ role: "assistant", content: answer });
        return { model: models[slot], messages, done };
      }
      return null;
    });
    const results = await Promise.all(jobs);
    running = [];
    ui.send.disabled = false;
    ui.stop.disabled = true;
    const finished = results.filter(Boolean);
    if (finished.length) {
      ui.prompt.value = "";
      saveRun(finished);
    }
  }

  ui.form.addEventListener("submit", send);
  ui.prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) ui.form.requestSubmit();
  });
  ui.stop.addEventListener("click", () => {
    for (const controller of running) controller.abort();
  });

  // ---------------------------------------------------------------- recent runs (localStorage)

  function loadRuns() {
    try {
      const runs = JSON.parse(localStorage.getItem(RUNS_STORAGE) || "[]");
      return Array.isArray(runs) ? runs : [];
    } catch (_) {
      return [];
    }
  }

  function saveRun(panes) {
    const runs = loadRuns();
    runs.unshift({ at: new Date().toISOString(), panes });
    while (runs.length > MAX_RUNS) runs.pop();
    for (;;) {
      try {
        localStorage.setItem(RUNS_STORAGE, JSON.stringify(runs));
        break;
      } catch (_) {
        if (runs.length <= 1) break; // one run larger than the storage: keep none
        runs.pop();
      }
    }
    renderHistory();
  }

  function lastUserText(messages) {
    const users = messages.filter((m) => m.role === "user");
    return users.length ? String(users[users.length - 1].content) : "";
  }

  function showRun(run) {
    ui.panes.replaceChildren();
    ui.panes.dataset.count = String(run.panes.length);
    for (const stored of run.panes) {
      const turns = stored.messages.filter((m) => m.role !== "system");
      const pane = new Pane(stored.model, "stored", turns);
      ui.panes.append(pane.root);
      pane.handle({ type: "fusion.started", method: stored.done.result.aggregation.method, candidates: [] });
      pane.handle(stored.done);
    }
    showStatus(`showing a stored run from ${run.at}`, "info");
  }

  function renderHistory() {
    const runs = loadRuns();
    ui.history.replaceChildren(...runs.map((run) => {
      const first = run.panes[0];
      const label = `${run.panes.map((p) => p.model).join(" vs ")} · ${lastUserText(first.messages).slice(0, 60)}`;
      const button = el("button", { type: "button", class: "history-item", text: label, title: run.at });
      button.addEventListener("click", () => showRun(run));
      return el("li", {}, button);
    }));
  }

  ui.clearHistory.addEventListener("click", () => {
    localStorage.removeItem(RUNS_STORAGE);
    renderHistory();
  });

  renderHistory();
  loadPresets();
})();
