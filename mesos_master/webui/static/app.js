// aiomesos web UI: live updates from the master's event stream (/events, server-sent events) and followed
// sandbox logs. No framework, no build step: the pages are rendered by the master; this only keeps them current.
"use strict";

const TERMINAL = new Set(["TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_ERROR", "TASK_LOST",
  "TASK_DROPPED", "TASK_GONE", "TASK_GONE_BY_OPERATOR"]);
const known = new Map();  // "framework/task" -> state, as the stream last said

function utc(seconds) {
  if (!seconds) return "";
  return new Date(seconds * 1000).toISOString().slice(0, 19).replace("T", " ");
}

function setBadge(el, state) {
  if (!el || el.textContent === state) return;
  el.textContent = state;
  el.className = "badge " + state.toLowerCase().replace(/^task_/, "");
}

function fields(root, name) {
  return root.querySelectorAll('[data-field="' + name + '"]');
}

// ------------------------------------------------------------------ task counts (the overview)
function count(state, delta) {
  const table = document.getElementById("task-states");
  if (!table) return;
  let cell = table.querySelector('[data-count="' + state + '"]');
  if (!cell && delta > 0) {
    const row = table.tBodies[0].insertRow();
    row.innerHTML = '<td><span class="badge" data-field="name"></span></td><td class=num>0</td>';
    setBadge(row.querySelector("span"), state);
    cell = row.cells[1];
    cell.dataset.count = state;
  }
  if (cell) cell.textContent = String(Math.max(0, Number(cell.textContent) + delta));
  const active = document.querySelector('[data-count="active"]');
  if (active && !TERMINAL.has(state)) active.textContent = String(Math.max(0, Number(active.textContent) + delta));
}

function track(key, state) {
  const before = known.get(key);
  if (before === state) return;
  known.set(key, state);
  if (before !== undefined) count(before, -1);
  count(state, +1);
}

// ------------------------------------------------------------------ tasks
function matches(table, u) {
  const d = table.dataset;
  const state = d.filterState || "";
  if (state === "active" && TERMINAL.has(u.state)) return false;
  if (state === "terminal" && !TERMINAL.has(u.state)) return false;
  if (state && state !== "active" && state !== "terminal" && state !== u.state) return false;
  if (d.filterFramework && d.filterFramework !== u.fw) return false;
  if (d.filterAgent && d.filterAgent !== u.agent && d.filterAgent !== u.host) return false;
  const name = d.filterName || "";
  return !name || (u.name || "").includes(name) || u.id.includes(name);
}

function addTaskRow(u) {
  const table = document.querySelector("table#tasks[data-live]");
  const template = document.getElementById("task-row");
  if (!table || !template || u.name === undefined || !matches(table, u)) return;
  const row = template.content.firstElementChild.cloneNode(true);
  row.dataset.task = u.fw + "/" + u.id;
  const link = row.querySelector('[data-field="task_id"]');
  link.textContent = u.id;
  link.href = "/tasks/" + encodeURIComponent(u.fw) + "/" + encodeURIComponent(u.id);
  fields(row, "name").forEach((el) => { el.textContent = u.name; });
  fields(row, "framework_id").forEach((el) => { el.textContent = u.fw; });
  const host = row.querySelector('[data-field="hostname"]');
  host.textContent = u.host || u.agent;
  host.href = "/agents/" + encodeURIComponent(u.agent);
  fields(row, "resources").forEach((el) => { el.textContent = ""; });
  const empty = table.querySelector("tr.empty");
  if (empty) empty.remove();
  table.tBodies[0].prepend(row);
}

function onTask(u) {
  const key = u.fw + "/" + u.id;
  track(key, u.state);
  let rows = document.querySelectorAll('[data-task="' + CSS.escape(key) + '"]');
  if (!rows.length) {
    addTaskRow(u);
    rows = document.querySelectorAll('[data-task="' + CSS.escape(key) + '"]');
  }
  addHistory(key, u);
  rows.forEach((row) => {
    fields(row, "state").forEach((el) => setBadge(el, u.state));
    if (u.time) fields(row, "updated").forEach((el) => { el.textContent = utc(u.time); });
    if (u.reason !== undefined) {
      fields(row, "reason").forEach((el) => { el.textContent = u.reason; el.title = u.message || ""; });
    }
  });
}

// A task's page: its status history grows as updates come.
function addHistory(key, u) {
  const table = document.querySelector('table[data-history="' + CSS.escape(key) + '"]');
  if (!table || !u.time) return;
  const latest = table.querySelector('tbody tr [data-field="history"]');
  if (latest && latest.textContent === u.state) return;
  const row = document.createElement("tr");
  const cells = ["", utc(u.time), u.source || "", u.reason || "", u.message || "", u.code === undefined ? "" : String(u.code)];
  cells.forEach((value, i) => {
    const cell = row.insertCell();
    cell.textContent = value;
    if (i === 5) cell.className = "num";
  });
  const badge = document.createElement("span");
  badge.dataset.field = "history";
  setBadge(badge, u.state);
  row.cells[0].append(badge);
  const empty = table.querySelector("tr.empty");
  if (empty) empty.remove();
  table.tBodies[0].prepend(row);
}

function onState(attr, id, state) {
  document.querySelectorAll("[data-" + attr + '="' + CSS.escape(id) + '"]').forEach((row) => {
    fields(row, "state").forEach((el) => setBadge(el, state));
  });
}

// An agent or a framework that appears while its list is open: a row with what the event says (the rest of its
// columns fill in at the next load).
function addRow(tableId, attr, id, href, name, state) {
  const table = document.getElementById(tableId);
  if (!table || table.querySelector("[data-" + attr + '="' + CSS.escape(id) + '"]')) return;
  const row = table.tBodies[0].insertRow(0);
  row.setAttribute("data-" + attr, id);
  for (let i = 0; i < table.tHead.rows[0].cells.length; i++) row.insertCell();
  const link = document.createElement("a");
  link.href = href;
  link.textContent = id;
  row.cells[0].append(link);
  row.cells[1].textContent = name;
  const badge = document.createElement("span");
  badge.dataset.field = "state";
  setBadge(badge, state);
  row.cells[tableId === "agents" ? 2 : 4].append(badge);
  const empty = table.querySelector("tr.empty");
  if (empty) empty.remove();
}

function byKey(attr) {
  const out = new Map();
  document.querySelectorAll("[data-" + attr + "]").forEach((el) => {
    const key = el.getAttribute("data-" + attr);
    if (!out.has(key)) out.set(key, []);
    out.get(key).push(el);
  });
  return out;
}

function onSnapshot(s) {
  // The first: the page was rendered from (nearly) this state; only what changed in between is applied. One
  // look at the page's rows, not one per task: a page may list thousands.
  const first = !document.body.dataset.snapshotSeen;
  const rows = byKey("task");
  for (const [fw, id, state] of s.tasks) {
    const key = fw + "/" + id;
    if (!first) { onTask({ fw: fw, id: id, state: state }); continue; }
    known.set(key, state);
    (rows.get(key) || []).forEach((row) => fields(row, "state").forEach((el) => setBadge(el, state)));
  }
  const agents = byKey("agent");
  for (const [id, state] of s.agents) {
    (agents.get(id) || []).forEach((row) => fields(row, "state").forEach((el) => setBadge(el, state)));
  }
  document.body.dataset.snapshotSeen = "1";
}

function apply(u) {
  if (u.k === "task") onTask(u);
  else if (u.k === "agent") {
    if (u.state !== "removed") addRow("agents", "agent", u.id, "/agents/" + encodeURIComponent(u.id), u.hostname, u.state);
    onState("agent", u.id, u.state);
  } else if (u.k === "framework") {
    const href = "/tasks?framework=" + encodeURIComponent(u.id);
    if (u.state !== "removed") addRow("frameworks", "framework", u.id, href, u.name, u.state);
    onState("framework", u.id, u.state);
  }
  else if (u.k === "snapshot") onSnapshot(u);
}

function connect() {
  const indicator = document.getElementById("live");
  if (!indicator || !window.EventSource || document.getElementById("login")) return;
  const source = new EventSource("/events");
  source.onopen = () => { indicator.textContent = "connecting"; };
  source.onerror = () => { indicator.textContent = "reconnecting"; indicator.className = "offline"; };
  source.onmessage = (e) => {
    const data = JSON.parse(e.data);
    (Array.isArray(data) ? data : [data]).forEach(apply);
    indicator.textContent = "live";  // the snapshot is in: the page is current
    indicator.className = "live";
    document.body.dataset.events = String(Number(document.body.dataset.events || 0) + 1);
  };
  source.addEventListener("end", () => { indicator.textContent = "reconnecting"; indicator.className = "offline"; });
}

// ------------------------------------------------------------------ logs
function follow(button) {
  const pre = document.getElementById(button.dataset.target);
  if (button.source) {
    button.source.close();
    button.source = null;
    button.textContent = "follow";
    return;
  }
  const source = new EventSource(button.dataset.follow);
  button.source = source;
  button.textContent = "stop";
  source.addEventListener("log", (e) => {
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.append(e.data);
    if (atBottom) pre.scrollTop = pre.scrollHeight;
    // The byte offset to go on from, should the stream be opened again: the server's (the event's id), since
    // the decoded text's length is not the file's (a replaced invalid byte, a newline turned).
    const url = new URL(button.dataset.follow, location.href);
    if (e.lastEventId) url.searchParams.set("offset", e.lastEventId);
    button.dataset.follow = url.pathname + url.search;
  });
  source.onerror = () => {  // not reopened from where it began: that would repeat what is shown
    source.close();
    button.source = null;
    button.textContent = "follow";
  };
  source.addEventListener("end", (e) => {
    source.close();
    button.source = null;
    button.textContent = "follow";
    button.title = e.data;
    pre.dataset.ended = "1";
  });
}

document.addEventListener("DOMContentLoaded", () => {
  connect();
  document.querySelectorAll("button.follow").forEach((b) => b.addEventListener("click", () => follow(b)));
  document.querySelectorAll("#filters select").forEach((s) => s.addEventListener("change", () => s.form.submit()));
});
