// The playground: a chat against this server's real /v1/chat/completions, streamed over SSE.

import { renderMarkdown } from "/playground/markdown.js";
import { errorMessage, readEvents } from "/playground/sse.js";

const KEY_STORAGE = "llmserve.apiKey";
const MODEL_STORAGE = "llmserve.model";
const SAMPLING_INPUTS = [
  ["temperature", "temperature"],
  ["top-p", "top_p"],
  ["max-tokens", "max_tokens"],
  ["seed", "seed"],
];

const $ = (id) => document.getElementById(id);
const conversation = []; // {role, content, item}: what the next request sends, and its <li>
let running = null; // the AbortController of the reply being streamed

function authHeaders() {
  const key = $("api-key").value.trim();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

function showError(text) {
  $("error").textContent = text;
  $("error").hidden = !text;
}

function setRunning(controller) {
  running = controller;
  $("send").disabled = controller !== null;
  $("stop").disabled = controller === null;
  $("regenerate").disabled = controller !== null || conversation.length === 0;
  $("status").textContent = controller ? "Generating…" : "";
}

async function loadModels() {
  const select = $("model");
  const wanted = select.value || localStorage.getItem(MODEL_STORAGE);
  try {
    const response = await fetch("/playground/models", { headers: authHeaders() });
    if (!response.ok) return showError(await errorMessage(response));
    const { data } = await response.json();
    select.replaceChildren(...data.map((model) => new Option(model.id, model.id)));
    if (data.some((model) => model.id === wanted)) select.value = wanted;
    if (data.length === 0) showError("No chat model is open to this API key.");
  } catch (error) {
    showError(`Cannot reach the server: ${error.message}`);
  }
}

function samplingFields() {
  const fields = {};
  for (const [id, name] of SAMPLING_INPUTS) {
    const text = $(id).value.trim();
    if (text !== "") fields[name] = Number(text);
  }
  return fields;
}

function requestBody() {
  const system = $("system-prompt").value.trim();
  const messages = conversation.map(({ role, content }) => ({ role, content }));
  return {
    model: $("model").value,
    messages: system ? [{ role: "system", content: system }, ...messages] : messages,
    stream: true,
    stream_options: { include_usage: true },
    ...samplingFields(),
  };
}

function addMessage(role, content) {
  const item = document.createElement("li");
  item.className = `message ${role}`;
  const label = document.createElement("span");
  label.className = "role";
  label.textContent = role === "user" ? "You" : "Assistant";
  const body = document.createElement("div");
  body.className = "content";
  if (role === "user") body.textContent = content;
  const stats = document.createElement("p");
  stats.className = "stats";
  item.append(label, body, stats);
  $("messages").append(item);
  item.scrollIntoView({ block: "end" });
  const entry = { role, content, item };
  conversation.push(entry);
  return entry;
}

// The reader follows a streaming reply only while they are at the end of the conversation: one
// who scrolled up to read stays where they are.
function isScrolledToEnd(pane) {
  return pane.scrollHeight - pane.scrollTop - pane.clientHeight < 40;
}

function removeLast() {
  conversation.pop().item.remove();
}

// "TTFT 85 ms · 41.2 tokens/s · 64 tokens": decode speed after the first token, as vLLM's TPOT.
function describeStats(timing, usage) {
  const parts = [`TTFT ${Math.round(timing.first - timing.start)} ms`];
  const tokens = usage?.completion_tokens;
  const seconds = (timing.last - timing.first) / 1000;
  if (tokens > 1 && seconds > 0) parts.push(`${((tokens - 1) / seconds).toFixed(1)} tokens/s`);
  if (tokens !== undefined) parts.push(`${tokens} tokens`);
  return parts.join(" · ");
}

async function streamInto(entry, response, timing) {
  const body = entry.item.querySelector(".content");
  let usage = null;
  for await (const chunk of readEvents(response)) {
    if (chunk.error) throw new Error(`${chunk.error.code ?? "error"}: ${chunk.error.message}`);
    if (chunk.usage) usage = chunk.usage;
    const delta = chunk.choices?.[0]?.delta?.content;
    if (!delta) continue;
    timing.last = performance.now();
    timing.first ??= timing.last;
    entry.content += delta;
    const following = isScrolledToEnd($("messages"));
    body.replaceChildren(renderMarkdown(entry.content));
    if (following) entry.item.scrollIntoView({ block: "end" });
  }
  return usage;
}

async function streamReply() {
  const controller = new AbortController();
  setRunning(controller);
  showError("");
  const timing = { start: performance.now(), first: null, last: null };
  let entry = null;
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: { "Content-Type": "application/json", ...authHeaders() },
      body: JSON.stringify(requestBody()),
      signal: controller.signal,
    });
    if (!response.ok) return showError(await errorMessage(response));
    entry = addMessage("assistant", "");
    const usage = await streamInto(entry, response, timing);
    entry.item.querySelector(".stats").textContent = timing.first
      ? describeStats(timing, usage)
      : "no text";
  } catch (error) {
    const stopped = error.name === "AbortError";
    if (!stopped) showError(error.message);
    if (entry) {
      const ttft = timing.first ? ` · TTFT ${Math.round(timing.first - timing.start)} ms` : "";
      entry.item.querySelector(".stats").textContent = (stopped ? "stopped" : "failed") + ttft;
    }
  } finally {
    setRunning(null);
  }
}

function send() {
  const text = $("prompt").value;
  if (running || !text.trim() || !$("model").value) return;
  // A message that got no reply (its request failed) is replaced by the next one.
  if (conversation.at(-1)?.role === "user") removeLast();
  addMessage("user", text);
  $("prompt").value = "";
  streamReply();
}

function regenerate() {
  if (running || conversation.length === 0) return;
  if (conversation.at(-1).role === "assistant") removeLast();
  if (conversation.length > 0) streamReply();
}

function clear() {
  running?.abort();
  while (conversation.length > 0) removeLast();
  showError("");
  setRunning(null);
}

function onPromptKey(event) {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    send();
  } else if (event.key === "Escape" && running) {
    running.abort();
  }
}

function init() {
  // A key typed before this module ran (it loads after the page is shown) is kept.
  if (!$("api-key").value) $("api-key").value = localStorage.getItem(KEY_STORAGE) ?? "";
  $("api-key").addEventListener("input", () => {
    localStorage.setItem(KEY_STORAGE, $("api-key").value.trim());
  });
  $("api-key").addEventListener("change", loadModels);
  $("model").addEventListener("change", () => localStorage.setItem(MODEL_STORAGE, $("model").value));
  $("settings-form").addEventListener("submit", (event) => event.preventDefault());
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    send();
  });
  $("prompt").addEventListener("keydown", onPromptKey);
  $("stop").addEventListener("click", () => running?.abort());
  $("regenerate").addEventListener("click", regenerate);
  $("clear").addEventListener("click", clear);
  if (window.matchMedia("(max-width: 700px)").matches) $("settings").open = false;
  setRunning(null);
  loadModels();
  document.body.dataset.ready = "true"; // every control is wired up from here on
}

init();
