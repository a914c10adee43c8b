// The admin console: keys, usage, live load, jobs and canaries, read from this server's /admin
// and /v1 APIs with the admin key. The key lives in sessionStorage only (gone when the tab
// closes); it is sent in the Authorization header, never in a URL, and never logged.

const KEY_STORAGE = "llmserve.adminKey";
const LIVE_INTERVAL_MS = 2000;
const COLORS = ["#2f5bd3", "#d9480f", "#2b8a3e", "#9c36b5", "#c92a2a", "#0b7285", "#e67700", "#495057"];
const SVG = "http://www.w3.org/2000/svg";
// The palette first; further keys get hues a golden angle apart, so no two keys share a colour.
const color = (k) => (k < COLORS.length ? COLORS[k] : `hsl(${Math.round((k * 137.508) % 360)} 65% 40%)`);

const $ = (id) => document.getElementById(id);
let adminKey = sessionStorage.getItem(KEY_STORAGE) || "";
let liveTimer = null;
let usageRows = []; // the last buckets read, for the plot and the CSV
let usageBucket = "hour";
const slidersTouched = new Set(); // canary models whose sliders the admin moved but did not apply

// --- talking to the server ---

async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${adminKey}`, ...(options.headers || {}) };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { ...options, headers, cache: "no-store" });
  const text = await response.text();
  const body = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const message = body && body.error ? body.error.message : `HTTP ${response.status}`;
    throw Object.assign(new Error(message), { status: response.status });
  }
  return body;
}

function showError(text) {
  $("error").textContent = text || "";
  $("error").hidden = !text;
}

function setStatus(text) {
  $("status").textContent = text;
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "—" : String(text);
  if (className) td.className = className;
  return td;
}

function button(text, label, onClick, className) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  b.setAttribute("aria-label", label);
  if (className) b.className = className;
  b.addEventListener("click", onClick);
  return b;
}

function when(seconds) {
  return seconds ? new Date(seconds * 1000).toISOString().slice(0, 16).replace("T", " ") + " UTC" : "never";
}

// --- signing in ---

async function signIn(key) {
  adminKey = key;
  try {
    await api("/admin/keys");
  } catch (error) {
    adminKey = "";
    sessionStorage.removeItem(KEY_STORAGE);
    $("console").hidden = true;
    return showError(error.status === 401 || error.status === 403 ? `Sign-in failed: ${error.message}` : `Cannot reach the server: ${error.message}`);
  }
  sessionStorage.setItem(KEY_STORAGE, key);
  $("admin-key").value = "";
  $("console").hidden = false;
  $("sign-out").hidden = false;
  $("sign-in").textContent = "Change key";
  showError("");
  setStatus("Signed in");
  await Promise.all([refreshLive(), loadUsage()]); // canaries come with the live load
  clearInterval(liveTimer);
  liveTimer = setInterval(refreshLive, LIVE_INTERVAL_MS);
}

function signOut() {
  clearInterval(liveTimer);
  adminKey = "";
  sessionStorage.removeItem(KEY_STORAGE);
  $("console").hidden = true;
  $("sign-out").hidden = true;
  $("sign-in").textContent = "Sign in";
  setStatus("Signed out");
}

// --- keys ---

function limitsText(key) {
  const parts = [`${key.max_concurrency} at once`];
  parts.push(key.rpm ? `${key.rpm} rpm` : "no rpm limit");
  parts.push(key.tpm ? `${key.tpm} tpm` : "no tpm limit");
  return parts.join(" · ");
}

function keyRow(key) {
  const tr = document.createElement("tr");
  tr.dataset.key = key.name;
  tr.append(
    cell(key.name), cell(key.id), cell(key.hint.slice(-4)), cell(limitsText(key)),
    cell(key.models ? key.models.join(", ") : "all"), cell(key.expires_at ? when(key.expires_at) : "never"),
    cell(key.status), cell(key.in_flight, "num in-flight"),
  );
  const actions = document.createElement("div");
  actions.className = "row-actions";
  if (key.status === "active") {
    actions.append(
      button("Edit limits", `Edit limits of ${key.name}`, () => editLimits(key), "secondary"),
      button("Revoke", `Revoke ${key.name}`, () => revoke(key), "danger"),
    );
  }
  const td = document.createElement("td");
  td.append(actions);
  tr.append(td);
  return tr;
}

function renderKeys(keys) {
  const tbody = $("keys-table").tBodies[0];
  const focused = document.activeElement && document.activeElement.getAttribute("aria-label");
  tbody.replaceChildren(...keys.map(keyRow));
  if (focused) { // NOTE: a refresh must not steal keyboard focus from a row's button
    const again = [...tbody.querySelectorAll("button")].find((b) => b.getAttribute("aria-label") === focused);
    if (again) again.focus();
  }
}

function numberField(id) {
  const text = $(id).value.trim();
  return text === "" ? null : Number(text);
}

async function createKey(event) {
  event.preventDefault();
  const body = { name: $("new-name").value.trim() };
  for (const [id, field] of [["new-concurrency", "max_concurrency"], ["new-rpm", "rpm"], ["new-tpm", "tpm"]]) {
    const value = numberField(id);
    if (value !== null) body[field] = value;
  }
  const models = $("new-models").value.split(",").map((m) => m.trim()).filter(Boolean);
  if (models.length) body.models = models;
  if ($("new-expires").value.trim()) body.expires = $("new-expires").value.trim();
  try {
    const created = await api("/admin/keys", { method: "POST", body: JSON.stringify(body) });
    $("new-secret").value = created.key;
    $("secret-box").hidden = false;
    $("create-key").reset();
    setStatus(`Created key ${created.name}`);
    showError("");
    $("new-secret").focus();
    $("new-secret").select();
    await refreshLive();
  } catch (error) {
    showError(`Could not create the key: ${error.message}`);
  }
}

async function copySecret() {
  try {
    await navigator.clipboard.writeText($("new-secret").value);
    setStatus("Secret copied");
  } catch {
    $("new-secret").select(); // NOTE: no clipboard access (plain http): the admin copies it
    setStatus("Press Ctrl+C to copy the selected secret");
  }
}

function revoke(key) {
  const dialog = $("revoke-dialog");
  $("revoke-text").textContent = `Revoke the key "${key.name}" (${key.hint})? Its next request gets 401; this cannot be undone.`;
  dialog.returnValue = "";
  dialog.onclose = async () => {
    if (dialog.returnValue !== "revoke") return;
    try {
      await api(`/admin/keys/${encodeURIComponent(key.name)}`, { method: "DELETE" });
      setStatus(`Revoked ${key.name}`);
      await refreshLive();
    } catch (error) {
      showError(`Could not revoke ${key.name}: ${error.message}`);
    }
  };
  dialog.showModal();
}

function editLimits(key) {
  const dialog = $("limits-dialog");
  $("limits-title").textContent = `Edit limits of ${key.name}`;
  $("edit-concurrency").value = key.max_concurrency;
  $("edit-rpm").value = key.rpm ?? "";
  $("edit-tpm").value = key.tpm ?? "";
  dialog.returnValue = "";
  dialog.onclose = async () => {
    if (dialog.returnValue !== "save") return;
    const body = { max_concurrency: numberField("edit-concurrency"), rpm: numberField("edit-rpm"), tpm: numberField("edit-tpm") };
    try {
      await api(`/admin/keys/${encodeURIComponent(key.name)}`, { method: "PATCH", body: JSON.stringify(body) });
      setStatus(`Saved the limits of ${key.name}`);
      await refreshLive();
    } catch (error) {
      showError(`Could not change the limits of ${key.name}: ${error.message}`);
    }
  };
  dialog.showModal();
}

// --- live load, keys and jobs (refreshed every few seconds) ---

function renderLoad(load) {
  $("models-table").tBodies[0].replaceChildren(...load.models.map((m) => {
    const tr = document.createElement("tr");
    tr.dataset.model = m.model;
    tr.append(cell(m.model), cell(m.num_running, "num running"), cell(m.num_waiting, "num waiting"),
      cell(`${(m.kv_cache_usage * 100).toFixed(1)} %`, "num"), cell(m.tokens_per_second.toFixed(1), "num"));
    return tr;
  }));
  $("slots-table").tBodies[0].replaceChildren(...load.keys.map((k) => {
    const tr = document.createElement("tr");
    tr.dataset.key = k.name;
    const meter = document.createElement("meter");
    meter.min = 0;
    meter.max = k.max_concurrency;
    meter.value = k.in_flight;
    meter.setAttribute("aria-label", `Slots of ${k.name} in use`);
    const td = cell(`${k.in_flight} / ${k.max_concurrency} `, "num slots");
    td.append(meter);
    tr.append(cell(k.name), td, cell(k.max_concurrency, "num"));
    return tr;
  }));
  $("load-updated").textContent = `updated ${new Date(load.time * 1000).toLocaleTimeString()}`;
}

function batchRow(batch) {
  const tr = document.createElement("tr");
  tr.dataset.batch = batch.id;
  const counts = batch.request_counts || { total: 0, completed: 0, failed: 0 };
  const done = counts.completed + counts.failed;
  const progress = document.createElement("progress");
  progress.max = Math.max(counts.total, 1);
  progress.value = done;
  progress.setAttribute("aria-label", `Progress of ${batch.id}`);
  const progressCell = cell(`${done} / ${counts.total} `, "num");
  progressCell.append(progress);
  const owner = batch.owner ? batch.owner.name || batch.owner.id : "—";
  tr.append(cell(batch.id), cell(owner), cell(batch.status, "batch-status"), progressCell, cell(when(batch.created_at)));
  const td = document.createElement("td");
  if (batch.status === "validating" || batch.status === "in_progress") {
    td.append(button("Cancel", `Cancel batch ${batch.id}`, () => cancelBatch(batch.id), "danger"));
  }
  tr.append(td);
  return tr;
}

async function cancelBatch(id) {
  try {
    await api(`/admin/batches/${encodeURIComponent(id)}/cancel`, { method: "POST" });
    setStatus(`Cancelling ${id}`);
    await refreshLive();
  } catch (error) {
    showError(`Could not cancel ${id}: ${error.message}`);
  }
}

async function refreshLive() {
  if (!adminKey) return;
  try {
    const [keys, load, batches] = await Promise.all([api("/admin/keys"), api("/admin/load"), api("/admin/batches?limit=100")]);
    renderKeys(keys.data);
    renderLoad(load);
    $("jobs-table").tBodies[0].replaceChildren(...batches.data.map(batchRow));
    $("jobs-empty").hidden = batches.data.length > 0;
    renderCanaries(load.models.filter((m) => m.variants));
    fillUsageModels(load.models.map((m) => m.model));
  } catch (error) {
    if (error.status === 401 || error.status === 403) signOut();
    showError(`Could not refresh: ${error.message}`);
  }
}

// --- usage: buckets, the plot, the totals table and the CSV ---

function fillUsageModels(models) {
  const select = $("usage-model");
  const have = [...select.options].map((o) => o.value);
  for (const model of models) if (!have.includes(model)) select.append(new Option(model, model));
}

async function loadUsage(event) {
  if (event) event.preventDefault();
  usageBucket = $("usage-bucket").value;
  const since = $("usage-since").value.trim() || "48h";
  const query = new URLSearchParams({ bucket: usageBucket, since });
  try {
    const body = await api(`/admin/usage?${query}`);
    usageRows = body.data;
    showError("");
    renderUsage();
  } catch (error) {
    showError(`Could not read usage: ${error.message}`);
  }
}

function selectedUsage() {
  const model = $("usage-model").value;
  return usageRows.filter((row) => !model || row.model === model);
}

function renderUsage() {
  const rows = selectedUsage();
  const metric = $("usage-metric").value;
  drawPlot(rows, metric);
  const totals = new Map();
  for (const row of rows) {
    const id = `${row.key_name}\u0000${row.model}`;
    const sum = totals.get(id) || { key_name: row.key_name, model: row.model, requests: 0, prompt_tokens: 0, completion_tokens: 0, total_tokens: 0, errors: 0, rejections: 0 };
    for (const field of ["requests", "prompt_tokens", "completion_tokens", "total_tokens", "errors", "rejections"]) sum[field] += row[field];
    totals.set(id, sum);
  }
  $("usage-table").tBodies[0].replaceChildren(...[...totals.values()].map((t) => {
    const tr = document.createElement("tr");
    tr.dataset.key = t.key_name;
    tr.dataset.model = t.model;
    tr.append(cell(t.key_name), cell(t.model), cell(t.requests, "num requests"), cell(t.prompt_tokens, "num prompt"),
      cell(t.completion_tokens, "num completion"), cell(t.total_tokens, "num total"), cell(t.errors, "num errors"), cell(t.rejections, "num rejections"));
    return tr;
  }));
}

function svg(name, attributes, text) {
  const element = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attributes)) element.setAttribute(k, String(v));
  if (text !== undefined) element.textContent = text;
  return element;
}

function bucketLabel(start) {
  const iso = new Date(start * 1000).toISOString();
  return usageBucket === "day" ? iso.slice(5, 10) : `${iso.slice(5, 10)} ${iso.slice(11, 16)}`;
}

function drawPlot(rows, metric) {
  // Grouped bars: one group per bucket, one bar per key (its models summed).
  const plot = $("usage-plot");
  const keys = [...new Set(rows.map((r) => r.key_name))].sort();
  const starts = [...new Set(rows.map((r) => r.start))].sort((a, b) => a - b);
  const value = new Map();
  for (const r of rows) value.set(`${r.start}|${r.key_name}`, (value.get(`${r.start}|${r.key_name}`) || 0) + r[metric]);
  const max = Math.max(1, ...value.values());
  // NOTE: drawn in the SVG's own pixels, so that its text is never stretched.
  const [width, height, left, bottom, top] = [Math.max(plot.clientWidth, 320), Math.max(plot.clientHeight, 160), 56, 34, 10];
  plot.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const children = [];
  for (const fraction of max >= 2 ? [0, 0.5, 1] : [0, 1]) {
    const y = top + (height - top - bottom) * (1 - fraction);
    children.push(svg("line", { x1: left, x2: width - 4, y1: y, y2: y, stroke: "#d8dde6" }));
    children.push(svg("text", { x: left - 6, y: y + 4, "text-anchor": "end" }, Math.round(max * fraction).toLocaleString()));
  }
  const groupWidth = (width - left - 8) / Math.max(starts.length, 1);
  const barWidth = Math.max(2, Math.min(40, (groupWidth * 0.8) / Math.max(keys.length, 1)));
  starts.forEach((start, i) => {
    const x0 = left + 4 + i * groupWidth + (groupWidth - barWidth * keys.length) / 2;
    keys.forEach((key, k) => {
      const v = value.get(`${start}|${key}`) || 0;
      const h = ((height - top - bottom) * v) / max;
      const bar = svg("rect", { x: x0 + k * barWidth, y: height - bottom - h, width: barWidth - 1, height: h, fill: color(k), "data-key": key, "data-start": start, "data-value": v });
      bar.append(svg("title", {}, `${key}, ${bucketLabel(start)}: ${v.toLocaleString()}`));
      children.push(bar);
    });
    if (starts.length <= 12 || i % Math.ceil(starts.length / 12) === 0) {
      children.push(svg("text", { x: left + 4 + (i + 0.5) * groupWidth, y: height - bottom + 16, "text-anchor": "middle" }, bucketLabel(start)));
    }
  });
  plot.replaceChildren(...children);
  const metricName = $("usage-metric").selectedOptions[0].textContent;
  $("usage-caption").textContent = rows.length
    ? `${metricName} per ${usageBucket} and key (UTC), ${starts.length} ${usageBucket}${starts.length === 1 ? "" : "s"}`
    : `No usage in this period.`;
  $("usage-legend").replaceChildren(...keys.map((key, k) => {
    const li = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = color(k);
    li.append(swatch, key);
    return li;
  }));
}

function downloadCsv() {
  const fields = ["start", "key_name", "key_id", "model", "requests", "prompt_tokens", "completion_tokens", "total_tokens", "errors", "rejections"];
  const quote = (v) => (/[",\n]/.test(String(v)) ? `"${String(v).replace(/"/g, '""')}"` : String(v));
  const lines = [fields.join(",")];
  for (const row of selectedUsage()) {
    lines.push(fields.map((f) => quote(f === "start" ? new Date(row.start * 1000).toISOString() : row[f])).join(","));
  }
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([lines.join("\n") + "\n"], { type: "text/csv" }));
  link.download = `llmserve-usage-${usageBucket}.csv`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

// --- canaries: a slider per variant, applied with PUT /admin/models/{model}/variants ---

function renderCanaries(models) {
  $("canaries-empty").hidden = models.length > 0;
  const list = $("canary-list");
  for (const m of models) {
    const id = `canary-${m.model}`;
    let fieldset = document.getElementById(id);
    if (fieldset && slidersTouched.has(m.model)) continue; // NOTE: keep what the admin is setting
    const total = Object.values(m.variants).reduce((a, b) => a + b, 0) || 1;
    if (!fieldset) {
      fieldset = document.createElement("fieldset");
      fieldset.id = id;
      fieldset.className = "canary";
      list.append(fieldset);
    }
    const legend = document.createElement("legend");
    legend.textContent = m.model;
    const rows = Object.entries(m.variants).map(([name, weight]) => variantSlider(m.model, name, Math.round((100 * weight) / total)));
    const apply = button("Apply weights", `Apply weights of ${m.model}`, () => applyWeights(m.model, fieldset));
    fieldset.replaceChildren(legend, ...rows, apply);
  }
}

function variantSlider(model, name, percent) {
  const row = document.createElement("div");
  row.className = "variant";
  const sliderId = `weight-${model}-${name}`.replace(/[^A-Za-z0-9_-]/g, "_");
  const label = document.createElement("label");
  label.htmlFor = sliderId;
  label.textContent = `Weight of ${name} in ${model}`;
  const slider = document.createElement("input");
  Object.assign(slider, { type: "range", id: sliderId, min: 0, max: 100, step: 1, value: percent });
  slider.dataset.variant = name;
  const output = document.createElement("output");
  output.htmlFor = sliderId;
  output.textContent = `${percent} %`;
  slider.addEventListener("input", () => {
    slidersTouched.add(model);
    balance(slider);
  });
  row.append(label, document.createElement("span"), slider, output);
  return row;
}

function balance(moved) {
  // The others share what is left, in their current proportions, so the total stays 100 %.
  const sliders = [...moved.closest("fieldset").querySelectorAll("input[type=range]")];
  const others = sliders.filter((s) => s !== moved);
  const left = 100 - Number(moved.value);
  const otherTotal = others.reduce((a, s) => a + Number(s.value), 0);
  let given = 0;
  others.forEach((s, i) => {
    const share = i === others.length - 1 ? left - given : Math.round(otherTotal ? (left * Number(s.value)) / otherTotal : left / others.length);
    s.value = share;
    given += share;
  });
  for (const s of sliders) s.nextElementSibling.textContent = `${s.value} %`;
}

async function applyWeights(model, fieldset) {
  const variants = [...fieldset.querySelectorAll("input[type=range]")].map((s) => ({ name: s.dataset.variant, weight: Number(s.value) }));
  try {
    await api(`/admin/models/${encodeURIComponent(model)}/variants`, { method: "PUT", body: JSON.stringify({ variants }) });
    slidersTouched.delete(model);
    setStatus(`Applied weights of ${model}: ${variants.map((v) => `${v.name} ${v.weight} %`).join(", ")}`);
    await refreshLive();
  } catch (error) {
    showError(`Could not apply the weights of ${model}: ${error.message}`);
  }
}

// --- wiring ---

$("signin").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = $("admin-key").value.trim();
  if (key) signIn(key);
});
$("sign-out").addEventListener("click", signOut);
$("create-key").addEventListener("submit", createKey);
$("copy-secret").addEventListener("click", copySecret);
$("usage-form").addEventListener("submit", loadUsage);
$("usage-metric").addEventListener("change", renderUsage);
$("usage-model").addEventListener("change", renderUsage);
$("usage-bucket").addEventListener("change", () => loadUsage());
$("usage-csv").addEventListener("click", downloadCsv);
window.addEventListener("resize", () => { if (usageRows.length) renderUsage(); }); // redrawn to its new width
document.body.dataset.ready = "true";
if (adminKey) signIn(adminKey);
