// thespian-otp observer: renders the snapshots of /api/events (server-sent events).
// No framework and no innerHTML of data: every value goes in as text.
"use strict";

const CONFIG = JSON.parse(document.querySelector('meta[name="observer-config"]').content);
const STATES = ["available", "running", "completed", "failed", "cancelled"];
const SVG = "http://www.w3.org/2000/svg";
let selected = null;     // the actor whose details are open
let selectedJob = null;  // or the job
let latest = null;

function $(id) { return document.getElementById(id); }

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, props) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (key === "text") node.textContent = value; else node.setAttribute(key, value);
  }
  return node;
}

function fmt(n) { return n === null || n === undefined ? "-" : Number(n).toLocaleString("en-US"); }
function bytes(n) {
  if (n === null || n === undefined) return "-";
  return n >= 1 << 30 ? (n / (1 << 30)).toFixed(1) + " GiB" : (n / (1 << 20)).toFixed(1) + " MiB";
}
function clock(epoch) { return epoch ? new Date(epoch * 1000).toLocaleTimeString("en-GB") : "-"; }
function seconds(s) { return s >= 60 ? (s / 60).toFixed(1) + " min" : s.toFixed(1) + " s"; }
function cellNum(value, cls) { return el("td", { class: "num " + (cls || "") }, value); }
function replace(id, rows, empty, span) {
  const body = $(id);
  body.replaceChildren(...rows);
  if (!rows.length) body.append(el("tr", {}, el("td", { class: "empty", colspan: span || 7 }, empty)));
}

// Rebuild a table only when its rows changed (`key`); otherwise `update` refreshes the cells
// that move on their own (memory, running time) in place. Rebuilding every snapshot replaced
// a button or row between a user's mousedown and mouseup, and the click was lost.
function replaceKeyed(id, key, build, update, empty, span) {
  const body = $(id);
  if (body.dataset.key === key) { update(body); return; }
  body.dataset.key = key;
  replace(id, build(), empty, span);
}


// --- tree ---------------------------------------------------------------------------------

function treeRows(nodes, depth, rows) {
  for (const node of nodes) {
    const cls = node.kind === "supervisor" ? node.strategy : node.actor_class;
    const row = el("tr", { "data-actor": node.name, class: node.kind + (node.name === selected ? " selected" : ""),
                          onclick: () => select(node.name) },
      el("td", { class: "name" }, el("span", { class: "indent" }, depth ? "\u00a0\u00a0".repeat(depth - 1) + "\u2514\u2500 " : ""),
         el("span", { class: "label" }, node.name)),
      el("td", { class: "dim" }, cls || ""),
      el("td", {}, el("span", { class: "status " + node.status }, node.status)),
      cellNum(node.pid || "-", "pid"),
      cellNum(node.restarts, "restarts" + (node.restarts ? " hot" : "")),
      cellNum(node.crashes, "crashes" + (node.crashes ? " bad" : "")),
      cellNum(node.dead_letters, "dead_letters" + (node.dead_letters ? " hot" : "")),
      cellNum(node.recoverable_errors, "recoverable"),
      cellNum(bytes(node.memory), "memory"));
    rows.push(row);
    treeRows(node.children, depth + 1, rows);
  }
  return rows;
}

// Each row is rebuilt only when its own figures changed (its key: the node without memory and
// children, and its depth); memory is refreshed in place. A restart elsewhere in the tree
// leaves this row's element alone, so a click on it (mousedown, mouseup) is never lost.
function renderTree(tree) {
  const body = $("tree");
  const old = new Map([...body.querySelectorAll("tr[data-actor]")].map(tr => [tr.dataset.actor, tr]));
  const rows = [];
  const walk = (nodes, depth) => { for (const n of nodes) { rows.push([n, depth]); walk(n.children, depth + 1); } };
  walk(tree, 0);
  const wanted = rows.map(([node, depth]) => {
    const { memory, children, ...rest } = node;
    const key = JSON.stringify([rest, depth]);
    const kept = old.get(node.name);
    if (kept && kept.dataset.key === key) {
      kept.querySelector("td.memory").textContent = bytes(memory);
      return kept;
    }
    const row = treeRows([{ ...node, children: [] }], depth, [])[0];
    row.dataset.key = key;
    return row;
  });
  const current = [...body.children];
  const inPlace = wanted.length === current.length && wanted.every((row, i) => current[i].dataset.actor === row.dataset.actor);
  if (!inPlace) { replace("tree", wanted, "no tree (see the error above)", 9); return; }
  wanted.forEach((row, i) => { if (current[i] !== row) current[i].replaceWith(row); });
}

function countNodes(nodes) { return nodes.reduce((n, node) => n + 1 + countNodes(node.children), 0); }

async function select(name) {
  selected = name;
  selectedJob = null;
  document.querySelectorAll(".tree tr").forEach(tr => tr.classList.toggle("selected", tr.dataset.actor === name));
  await showDetails();
}

async function showDetails() {
  if (selectedJob !== null) return showJob();
  if (!selected) return;
  const response = await fetch("/api/actors/" + encodeURIComponent(selected));
  const data = await response.json();
  $("details").hidden = false;
  $("details").querySelector("h2").firstChild.textContent = "Actor ";
  $("details-name").textContent = selected;
  if (!response.ok) { $("details-body").replaceChildren(el("p", { class: "empty" }, data.error)); return; }
  const list = el("dl", {});
  const add = (key, value) => list.append(el("dt", {}, key), el("dd", {}, value === null || value === undefined ? "-" : value));
  add("kind", data.kind);
  add("class / strategy", data.kind === "supervisor" ? data.strategy : data.actor_class);
  add("status", data.status);
  add("restart type", data.restart);
  add("restarts", data.restarts);
  add("crashes / dead letters / errors", `${data.counters.crashes} / ${data.counters.dead_letters} / ${data.counters.recoverable_errors}`);
  add("last exit reason", data.last_exit);
  if (data.process) {
    add("process", `pid ${data.process.pid}, ${bytes(data.process.rss)}, ${data.process.threads} threads, cpu ${data.process.cpu_times} s, since ${clock(data.process.started)}`);
    add("command", data.process.cmdline);
  }
  if (data.children.length) add("children", data.children.join(", "));
  if (data.spec) for (const [key, value] of Object.entries(data.spec)) add("spec." + key, value);
  else add("spec", data.spec_note);
  const recent = el("ul", {}, ...data.recent_errors.map(e => el("li", {}, `${clock(e.at)} ${e.what}`)));
  $("details-body").replaceChildren(list, el("h3", {}, "recent errors (seen by this observer)"),
    data.recent_errors.length ? recent : el("p", { class: "empty" }, "none since the observer started"));
}

async function openJob(id) {
  selected = null;
  selectedJob = id;
  document.querySelectorAll(".tree tr").forEach(tr => tr.classList.remove("selected"));
  await showJob();
}

async function showJob() {
  const response = await fetch("/api/jobs/" + selectedJob);
  const data = await response.json();
  $("details").hidden = false;
  $("details-name").textContent = "";
  $("details").querySelector("h2").firstChild.textContent = "Job ";
  $("details-name").textContent = String(selectedJob);
  if (!response.ok) { $("details-body").replaceChildren(el("p", { class: "empty" }, data.error)); return; }
  const job = data.job;
  const list = el("dl", {});
  const add = (key, value) => list.append(el("dt", {}, key), el("dd", {}, value === null || value === undefined ? "-" : value));
  add("kind / queue", `${job.kind} / ${job.queue}`);
  add("state", job.state);
  add("attempt", `${job.attempt} of ${job.max_attempts}`);
  add("priority", job.priority);
  add("created / run at", `${clock(job.created_at)} / ${clock(job.run_at)}`);
  add("claimed", job.claimed_at ? `${clock(job.claimed_at)} by process ${job.claimed_by || "-"}` : null);
  add("finished", clock(job.finished_at));
  add("payload", job.payload);
  add("last error", job.last_error);
  // the job's history: failed attempts (with the handler's traceback when the worker recorded
  // one) and operators' retries and cancels (an `outcome` and `by`, no process or error)
  const attempts = (job.errors || []).map(e => {
    const where = e.process ? ` (process ${e.process})` : "";
    const what = e.outcome === "retried" ? `retried by ${e.by}` : `${e.error || e.outcome}${e.was ? ` (was ${e.was})` : ""}`;
    const item = el("li", {}, `attempt ${e.attempt} at ${String(e.at).slice(11, 19)}${where}: ${what}`);
    if (e.traceback) item.append(el("details", {}, el("summary", {}, "traceback"), el("pre", { class: "traceback" }, e.traceback)));
    return item;
  });
  $("details-body").replaceChildren(list, el("h3", {}, "history"),
    attempts.length ? el("ul", { class: "attempts" }, ...attempts) : el("p", { class: "empty" }, "none"));
}

// --- charts -------------------------------------------------------------------------------

function bars(target, series, keys) {
  const width = 600, height = 140, top = 12, bottom = 16;
  const n = series.at.length;
  const totals = series.at.map((_, i) => keys.reduce((s, k) => s + series[k][i], 0));
  const max = Math.max(1, ...totals);
  const step = width / Math.max(n, 1);
  const nodes = [svg("line", { class: "grid", x1: 0, x2: width, y1: top, y2: top })];
  nodes.push(svg("text", { x: 4, y: 10, text: `max ${max} per ${series.seconds.length > 1 ? series.seconds.at(-1).toFixed(1) : "?"} s` }));
  for (let i = 0; i < n; i++) {
    let y = height - bottom;
    for (const key of keys) {
      const value = series[key][i];
      if (!value) continue;
      const h = (value / max) * (height - top - bottom);
      y -= h;
      nodes.push(svg("rect", { class: "s-" + key, x: i * step + 0.5, y, width: Math.max(step - 1, 1), height: h }));
    }
  }
  nodes.push(axis(series, width, height));
  target.replaceChildren(...nodes);
}

function lines(target, series, keys) {
  const width = 600, height = 140, top = 12, bottom = 16;
  const rate = k => series[k].map((v, i) => series.seconds[i] > 0 ? v / series.seconds[i] : 0);
  const rates = Object.fromEntries(keys.map(k => [k, rate(k)]));
  const max = Math.max(1, ...keys.flatMap(k => rates[k]));
  const n = series.at.length;
  const x = i => n > 1 ? (i / (n - 1)) * width : 0;
  const y = v => height - bottom - (v / max) * (height - top - bottom);
  const nodes = [svg("line", { class: "grid", x1: 0, x2: width, y1: top, y2: top }),
                 svg("text", { x: 4, y: 10, text: `max ${max.toFixed(0)}/s` })];
  for (const key of keys) {
    const points = rates[key].map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    if (points) nodes.push(svg("polyline", { class: "s-" + key, points }));
  }
  nodes.push(axis(series, width, height));
  target.replaceChildren(...nodes);
  return Object.fromEntries(keys.map(k => [k, rates[k].at(-1) || 0]));
}

function axis(series, width, height) {
  const span = series.at.length > 1 ? series.at.at(-1) - series.at[0] : 0;
  return svg("text", { x: 4, y: height - 4, text: `last ${span.toFixed(0)} s` });
}

// --- jobs, projections, limiters, nodes ---------------------------------------------------

function stateTable(id, groups, label) {
  const head = el("tr", {}, el("th", {}, label), ...STATES.map(s => el("th", { class: "num" }, s)));
  const rows = Object.keys(groups).sort().map(name =>
    el("tr", {}, el("td", {}, name), ...STATES.map(s => cellNum(fmt(groups[name][s] || 0), s === "failed" && groups[name][s] ? "bad" : ""))));
  $(id).replaceChildren(el("thead", {}, head), el("tbody", {}, ...rows));
}

function jobCell(id) {
  return el("td", { class: "num" }, el("button", { class: "link job-link", type: "button", title: "details", onclick: () => openJob(id) }, id));
}

function actionButton(kind, job) {
  if (!CONFIG.actions) return null;
  return el("button", { class: kind, type: "button", "data-job": job.id,
                        onclick: event => act(kind, job.id, event.target) }, kind);
}

async function act(action, jobId, button) {
  button.disabled = true;
  try {
    const response = await fetch(`/api/jobs/${jobId}/${action}`, {
      method: "POST", headers: { "X-Observer-Token": CONFIG.token }, credentials: "same-origin" });
    const data = await response.json();
    toast(response.ok ? `job ${jobId}: ${action} done (now ${data.job.state})` : `job ${jobId}: ${data.error}`, !response.ok);
  } catch (error) {
    toast(`job ${jobId}: ${error}`, true);
  } finally {
    button.disabled = false;
  }
}

function toast(text, bad) {
  const box = $("toast");
  box.textContent = text;
  box.className = "toast" + (bad ? " bad" : "");
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.hidden = true; }, 4000);
}

function renderDatabase(db) {
  $("jobs-card").hidden = !db;
  if (!db) return;
  $("jobs-schema").textContent = "schema " + db.schema;
  const jobs = db.jobs;
  $("job-states").replaceChildren(...STATES.map(s =>
    el("div", { class: "tile " + s, "data-state": s }, el("div", { class: "value" }, fmt(jobs.by_state[s] || 0)), el("div", { class: "what" }, s))));
  stateTable("by-queue", jobs.by_queue, "queue");
  stateTable("by-kind", jobs.by_kind, "kind");
  replaceKeyed("running", JSON.stringify(jobs.running.map(j => [j.id, j.attempt, j.claimed_by])),
    () => jobs.running.map(j => el("tr", { "data-job": j.id },
      jobCell(j.id), el("td", {}, j.queue), el("td", {}, j.kind), cellNum(`${j.attempt}/${j.max_attempts}`),
      cellNum(j.claimed_by), cellNum(seconds(j.running_s), "running-for"), el("td", { class: "action" }, actionButton("cancel", j)))),
    body => jobs.running.forEach(j => {
      const cell = body.querySelector(`tr[data-job="${j.id}"] td.running-for`);
      if (cell) cell.textContent = seconds(j.running_s);
    }), "no job is running");
  replaceKeyed("failed", JSON.stringify(jobs.failed),
    () => jobs.failed.map(j => el("tr", { "data-job": j.id },
      jobCell(j.id), el("td", {}, j.queue), el("td", {}, j.kind), el("td", {}, j.state), cellNum(`${j.attempt}/${j.max_attempts}`),
      el("td", { class: "error", title: j.last_error || "" }, j.last_error || "-"), el("td", { class: "action" }, actionButton("retry", j)))),
    () => {}, "no failed job");
  replace("projections", db.projections.map(p => el("tr", { "data-projection": p.name },
    el("td", {}, p.name), cellNum(fmt(p.position)), cellNum(fmt(p.lag), p.lag ? "hot" : ""),
    el("td", {}, p.holder_pid ? `${p.holder || "?"} (backend pid ${p.holder_pid}${p.holder_addr ? ", " + p.holder_addr : ""})` : "nobody"),
    el("td", { class: "dim" }, `${p.last_writer || "-"} ${clock(p.updated_at)}`))), "no projection", 5);
  const procs = db.nodes.flatMap(n => n.processes.map(p => el("tr", { "data-node": n.node },
    el("td", {}, n.node), el("td", {}, p.host), el("td", {}, p.node), cellNum(p.id), cellNum(p.pid), cellNum(p.running),
    el("td", {}, clock(p.heartbeat_at)), el("td", { class: p.expired ? "bad" : "" }, clock(p.expires_at)))));
  replace("nodes", procs, "no worker process is registered", 8);
  $("nodes-count").textContent = `${db.nodes.length} node${db.nodes.length === 1 ? "" : "s"}, ${procs.length} processes`;
}

function renderLimiters(limiters) {
  const rows = [];
  for (const limiter of limiters) {
    if (limiter.error) rows.push(el("tr", {}, el("td", {}, limiter.actor), el("td", { class: "error", colspan: 6 }, limiter.error)));
    for (const k of limiter.keys) rows.push(el("tr", { "data-key": k.key },
      el("td", {}, limiter.actor), el("td", {}, k.key), cellNum(k.held), cellNum(k.concurrency),
      cellNum(k.waiting, k.waiting ? "hot" : ""), cellNum(fmt(k.granted)), cellNum(k.timed_out, k.timed_out ? "bad" : "")));
  }
  replace("limiters", rows, "no limiter in the tree (or no key used yet)");
}

// --- the feed -----------------------------------------------------------------------------

function render(snapshot) {
  latest = snapshot;
  $("runtime").textContent = `runtime ${snapshot.runtime.name || "(unnamed)"} · ${snapshot.runtime.base || "?"}`;
  $("updated").textContent = "updated " + clock(snapshot.taken_at);
  renderTree(snapshot.tree);
  $("tree-count").textContent = `${countNodes(snapshot.tree)} actors`;
  const t = snapshot.totals;
  $("faults-total").textContent = `since the observer started: ${t.restarts} restarts, ${t.crashes} crashes, ${t.dead_letters} dead letters`;
  bars($("faults-chart"), snapshot.series, ["restarts", "crashes", "dead_letters"]);
  const now = lines($("jobs-chart"), snapshot.series, ["completed", "failed", "retried", "rescued"]);
  $("throughput-now").textContent = `now ${now.completed.toFixed(0)} completed/s · ${t.completed} completed, ${t.failed} failed since the observer started`;
  renderDatabase(snapshot.database);
  renderLimiters(snapshot.limiters);
  const errors = Object.entries(snapshot.errors);
  $("errors").hidden = !errors.length;
  $("errors").textContent = errors.map(([part, text]) => `${part}: ${text}`).join(" · ");
  if (selected || selectedJob !== null) showDetails();
}

function connect() {
  const feed = new EventSource("/api/events");
  feed.addEventListener("snapshot", event => {
    $("live").className = "live";
    $("live").textContent = "live";
    render(JSON.parse(event.data));
  });
  feed.onerror = () => { $("live").className = "live off"; $("live").textContent = "reconnecting"; };
}

$("details-close").addEventListener("click", () => { selected = null; selectedJob = null; $("details").hidden = true;
  document.querySelectorAll(".tree tr").forEach(tr => tr.classList.remove("selected")); });
$("mode").textContent = CONFIG.actions ? "" : "read-only";
$("mode").title = CONFIG.actions_note || "";
if (!CONFIG.actions) { $("actions-note").hidden = false; $("actions-note").textContent = "retry and cancel are off: " + (CONFIG.actions_note || "read-only"); }
connect();
