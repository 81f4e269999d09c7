// recforge web page: plain JS, no build step. All data is inserted with textContent (never
// innerHTML), so titles and IDs from the API cannot inject markup.
"use strict";

const KEY_STORAGE = "recforge.apiKey";
const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

async function api(path, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  const key = sessionStorage.getItem(KEY_STORAGE);
  if (key) headers["X-API-Key"] = key;
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method: options.method || "GET",
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  let data = null;
  try { data = await response.json(); } catch (_) { data = null; }
  if (!response.ok) {
    const detail = (data && data.detail) || response.statusText;
    if (response.status === 401 || response.status === 403) showKeyPanel(detail);
    throw new ApiError(response.status, detail);
  }
  return data;
}

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function setStatus(text, isError = false) {
  const status = $("status");
  status.textContent = text;
  status.className = isError ? "error" : "muted";
}

function showKeyPanel(message) {
  $("key-panel").hidden = false;
  $("main").hidden = true;
  $("key-error").textContent = sessionStorage.getItem(KEY_STORAGE) ? message : "";
}

function itemLink(item) {
  const button = el("button", item.title || `item ${item.item_id}`, "item-link");
  button.type = "button";
  button.dataset.itemId = item.item_id;
  button.title = `item ${item.item_id}`;
  button.addEventListener("click", () => showSimilar(item.item_id));
  return button;
}

function formatScore(score) {
  return score === null || score === undefined ? "" : Number(score).toFixed(3);
}

function explanationText(explanation) {
  if (!explanation) return "";
  if (explanation.because && explanation.because.length) {
    return "because of " + explanation.because
      .map((b) => `${b.title || b.item_id || b.feature} (${Number(b.contribution).toFixed(2)})`).join(", ");
  }
  if (explanation.reason === "popular") return `popular: ${explanation.popularity} interactions`;
  if (explanation.reason === "user_features") return "chosen for the user's features";
  return "model score";
}

const FALLBACK_LABELS = {
  popularity: "popularity fallback",
  fold_in: "from the user's new events",
  features: "from the user's features",
};

async function start() {
  try {
    const model = await api("/v1/model");
    $("model-info").textContent =
      `${model.name} · version ${model.version} · ${model.n_users} users · ${model.n_items} items`;
    $("key-panel").hidden = true;
    $("main").hidden = false;
    $("forget-key").hidden = !sessionStorage.getItem(KEY_STORAGE);
    const users = await api("/v1/users?limit=200");
    const list = $("user-list");
    list.replaceChildren(...users.users.map((u) => { const o = el("option"); o.value = u; return o; }));
    if (!$("user-input").value && users.users.length) $("user-input").value = users.users[0];
    document.body.dataset.ready = "true";
  } catch (err) {
    if (!(err instanceof ApiError && (err.status === 401 || err.status === 403))) {
      $("model-info").textContent = `cannot reach the service: ${err.message}`;
    }
  }
}

async function loadUser() {
  const user = $("user-input").value.trim();
  if (!user) return;
  const k = Math.max(1, Math.min(100, parseInt($("k").value, 10) || 10));
  const explain = $("explain").checked;
  const enc = encodeURIComponent(user);
  setStatus(`loading user ${user}…`);
  try {
    const [history, recs] = await Promise.all([
      api(`/v1/users/${enc}/history?limit=50`),
      api(`/v1/users/${enc}/recommendations?k=${k}&explain=${explain}`),
    ]);
    renderHistory(history);
    renderRecs(recs);
    setStatus(history.known ? `user ${user}` : `user ${user} is new to the model`);
  } catch (err) {
    setStatus(err.message, true);
  }
}

function renderHistory(history) {
  const rows = history.items.map((item) => {
    const tr = el("tr");
    tr.dataset.itemId = item.item_id;
    const cell = el("td");
    cell.append(itemLink(item));
    tr.append(cell, el("td", item.rating === null ? "–" : String(item.rating)),
      el("td", item.source === "event" ? `new (${item.type})` : "training"));
    return tr;
  });
  $("history").tBodies[0].replaceChildren(...rows);
}

function renderRecs(recs) {
  $("fallback").hidden = recs.fallback === null;
  if (recs.fallback !== null) $("fallback").textContent = FALLBACK_LABELS[recs.fallback] || recs.fallback;
  const items = recs.items.map((item) => {
    const li = el("li");
    li.dataset.itemId = item.item_id;
    li.append(itemLink(item), el("span", formatScore(item.score), "score"));
    const why = explanationText(item.explanation);
    if (why) li.append(el("span", why, "why"));
    return li;
  });
  $("recs").replaceChildren(...items);
}

async function showSimilar(itemId) {
  $("rate-item").value = itemId;
  try {
    const result = await api(`/v1/items/${encodeURIComponent(itemId)}/similar?k=10`);
    $("similar-title").textContent = `Similar to ${result.title || "item " + result.item_id}`;
    $("similar-hint").hidden = true;
    $("similar-list").replaceChildren(...result.items.map((item) => {
      const li = el("li");
      li.dataset.itemId = item.item_id;
      li.append(itemLink(item), el("span", formatScore(item.score), "score"));
      return li;
    }));
  } catch (err) {
    setStatus(err.message, true);
  }
}

function newKey() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  return `${Date.now()}-${Math.random().toString(36).slice(2)}`;
}

async function recordRating() {
  const user = $("user-input").value.trim();
  const item = $("rate-item").value.trim();
  if (!user || !item) return;
  const rating = Number($("rate-value").value);
  try {
    await api("/v1/events", {
      method: "POST",
      body: { events: [{ user_id: user, item_id: item, rating, type: "rating",
        timestamp: Math.floor(Date.now() / 1000), idempotency_key: newKey() }] },
    });
    await loadUser();
    setStatus(`recorded ${rating} for item ${item}`);
  } catch (err) {
    setStatus(err.message, true);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY_STORAGE, $("api-key").value.trim());
    $("api-key").value = "";
    start();
  });
  $("forget-key").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORAGE);
    location.reload();
  });
  $("user-form").addEventListener("submit", (event) => { event.preventDefault(); loadUser(); });
  $("rate-form").addEventListener("submit", (event) => { event.preventDefault(); recordRating(); });
  start();
});
