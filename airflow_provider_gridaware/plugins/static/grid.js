// The Grid page: renders api/grid and refreshes it in place (no full reload).
"use strict";

const REFRESH_MS = 60000;
const params = new URLSearchParams(location.search);
const focus = params.get("dag_id") && params.get("task_id") ? {
  dag_id: params.get("dag_id"), run_id: params.get("run_id") || "", task_id: params.get("task_id"),
  map_index: Number(params.get("map_index") || -1),
} : null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}

const pad = (n) => String(n).padStart(2, "0");
function hhmm(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
}
function when(iso, now) {
  if (!iso) return "—";
  const d = new Date(iso), n = new Date(now);
  const days = Math.round((Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()) -
    Date.UTC(n.getUTCFullYear(), n.getUTCMonth(), n.getUTCDate())) / 86400000);
  const day = days === 0 ? "" : days === 1 ? "tomorrow " : days === -1 ? "yesterday " :
    `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} `;
  return `${day}${hhmm(iso)} UTC`;
}
function inWords(seconds) {
  const s = Math.abs(seconds);
  if (s < 90) return `${Math.round(s)} s`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60), r = m % 60;
  return r ? `${h} h ${r} min` : `${h} h`;
}
const pct = (x) => `${Math.round(x * 100)} %`;
const kg = (x) => (Math.abs(x) >= 1000 ? `${(x / 1000).toFixed(2)} t` : `${x.toFixed(Math.abs(x) < 10 ? 2 : 1)} kg`);

function curve(zone, now) {
  const raw = zone.forecast.map(([t, v]) => [Date.parse(t), v]);
  const cal = zone.calibrated.map(([t, v]) => [Date.parse(t), v]);
  const all = raw.concat(cal);
  const W = 340, H = 120, L = 34, B = 16, T = 6;
  const box = svg("svg", { class: "curve", viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img",
    "aria-label": `${zone.zone} forecast` });
  if (all.length < 2) return box;
  const x0 = Math.min(...all.map((p) => p[0])), x1 = Math.max(...all.map((p) => p[0]));
  const vs = all.map((p) => p[1]);
  let y0 = Math.min(...vs), y1 = Math.max(...vs);
  if (y1 - y0 < 1) { y0 -= 1; y1 += 1; }
  const X = (t) => L + ((t - x0) / (x1 - x0 || 1)) * (W - L - 4);
  const Y = (v) => T + (1 - (v - y0) / (y1 - y0)) * (H - T - B);
  const w = zone.clean_window;
  if (w) {
    const a = X(Math.max(Date.parse(w.start), x0)), b = X(Math.min(Date.parse(w.end), x1));
    box.append(svg("rect", { class: "win", x: a, y: T, width: Math.max(1, b - a), height: H - T - B }));
  }
  const path = (pts) => pts.map((p, i) => `${i ? "L" : "M"}${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join("");
  box.append(svg("path", { class: "raw", d: path(raw) }));
  if (cal.length) box.append(svg("path", { class: "cal", d: path(cal) }));
  else box.lastChild.setAttribute("class", "cal");
  const n = Date.parse(now);
  if (n >= x0 && n <= x1) box.append(svg("line", { class: "nowline", x1: X(n), x2: X(n), y1: T, y2: H - B }));
  for (const v of [y0, y1]) {
    const t = svg("text", { x: 2, y: Y(v) + 3 }); t.textContent = Math.round(v); box.append(t);
  }
  for (const t of [x0, (x0 + x1) / 2, x1]) {
    const label = svg("text", { x: Math.min(X(t) - 12, W - 28), y: H - 3 });
    label.textContent = hhmm(new Date(t).toISOString()); box.append(label);
  }
  return box;
}

function renderZones(data) {
  const root = document.getElementById("zones");
  root.replaceChildren();
  if (!data.zones.length) {
    root.append(el("p", { class: "muted" }, "No zones: set [gridaware] ui_zones, or wait until a grid-aware task is waiting."));
    return;
  }
  for (const z of data.zones) {
    const card = el("div", { class: "card zone", "data-zone": z.zone });
    card.append(el("h3", {}, z.zone, el("span", { class: "sub" }, `${z.conn_id}${z.metric ? ` · ${z.metric}` : ""}`)));
    if (z.error) {
      card.append(el("p", { class: "bad" }, z.error));
      root.append(card);
      continue;
    }
    card.append(el("div", {}, el("span", { class: "now" }, z.current === null ? "—" : Math.round(z.current)), " ",
      el("span", { class: "unit" }, `${z.unit} now`)));
    const w = z.clean_window;
    if (w) {
      const lower = w.lower_than_now === null ? "" : w.lower_than_now > 0 ? `, ${pct(w.lower_than_now)} lower than now` : ", no cleaner than now";
      card.append(el("div", { class: "clean" }, "Next clean window: ", el("b", {}, `${when(w.start, data.now)}–${hhmm(w.end)}`),
        ` (${Math.round(w.mean)} ${z.unit}${lower})`));
    }
    card.append(curve(z, data.now));
    const legend = el("div", { class: "legend" });
    if (z.calibrated.length) legend.append(el("span", {}, el("i"), "calibrated"), el("span", {}, el("i", { class: "raw" }), `${z.source} as published`));
    else legend.append(el("span", {}, el("i"), `${z.source} forecast`));
    card.append(legend);
    if (z.calibration_note) card.append(el("div", { class: "sub" }, z.calibration_note));
    root.append(card);
  }
}

function saving(task) {
  const parts = Object.entries(task.expected_saving).map(([unit, s]) => {
    const a = task.now_signals[unit], b = task.expected_signals[unit];
    return el("div", { class: s > 0 ? "good" : "" }, `${pct(s)} lower`, el("div", { class: "sub" }, `${Math.round(b)} vs ${Math.round(a)} ${unit}`));
  });
  return parts.length ? parts : [el("span", { class: "muted" }, task.fallback ? "no signal" : "—")];
}

function isFocus(t) {
  return focus && t.dag_id === focus.dag_id && t.task_id === focus.task_id &&
    (!focus.run_id || t.run_id === focus.run_id) && t.map_index === focus.map_index;
}

function renderWaiting(data) {
  const body = document.querySelector("#waiting tbody");
  const total = data.waiting_total;
  document.getElementById("waiting-count").textContent = !total ? "" :
    total > data.waiting.length ? `(${data.waiting.length} of ${total}, the soonest first)` : `(${total})`;
  body.replaceChildren();
  if (!data.waiting.length) {
    body.append(el("tr", {}, el("td", { colspan: 6, class: "muted" }, "No grid-aware task is waiting.")));
    return;
  }
  for (const t of data.waiting) {
    const mapped = t.map_index >= 0 ? ` [${t.map_index}]` : "";
    const row = el("tr", { class: isFocus(t) ? "focused" : null, "data-task": `${t.dag_id}.${t.task_id}` },
      el("td", {}, el("div", { class: "task" }, `${t.dag_id}.${t.task_id}${mapped}`), el("div", { class: "sub" }, `${t.run_id} · ${t.priority_class}`)),
      el("td", {}, t.zone || "—"),
      el("td", { class: "num" }, when(t.planned_start, data.now)),
      el("td", { class: "num" }, when(t.latest_start, data.now)),
      el("td", {}, saving(t)),
      el("td", { class: "reason" }, t.reason, t.decided_at ? el("div", { class: "sub" }, `decided ${when(t.decided_at, data.now)}`) : null));
    body.append(row);
  }
}

const KIND_WORDS = { dag: "DAG", kubernetes_job: "Kubernetes job", batch_job: "Batch job" };

function holdRow(h, now) {
  const applied = h.applied_at || h.requested_at;
  const by = (runner) => (runner ? ` by the ${runner}` : "");
  const resumed = h.open ? el("span", { class: "muted" }, "still held") :
    [when(h.resumed_at || h.resume_requested_at, now), h.resume_result ? el("div", { class: "sub" }, `${h.resume_result}${by(h.resumed_by)}`) : null];
  const waited = h.waited_s === null ? "—" : h.open ? `${inWords(h.waited_s)} so far` : inWords(h.waited_s);
  return el("tr", { class: h.open ? "open" : null, "data-hold": h.target },
    el("td", {}, el("div", { class: "task" }, h.name), el("div", { class: "sub" }, `${KIND_WORDS[h.target_kind] || h.target_kind} · ${h.priority_class}${h.zone ? ` · ${h.zone}` : ""}`)),
    el("td", {}, h.action, el("div", { class: "sub" }, h.reason)),
    el("td", { class: "num" }, when(applied, now)),
    el("td", {}, el("span", { class: `pill ${h.result === "failed" ? "active" : ""}` }, h.result), h.paused_by ? el("div", { class: "sub" }, `by the ${h.paused_by}`) : null),
    el("td", { class: "num" }, resumed),
    el("td", { class: "num" }, waited));
}

function renderHolds(e, now) {
  if (!e.holds.length && !e.hidden_holds) return el("p", { class: "muted small" }, "The grid-event response paused nothing for it.");
  const hidden = e.hidden_holds ? el("p", { class: "muted small" }, `${e.hidden_holds} more on DAGs you may not read.`) : null;
  if (!e.holds.length) return hidden;
  return [el("table", { class: "table holds" },
    el("thead", {}, el("tr", {}, el("th", {}, "Paused"), el("th", {}, "Action"), el("th", { class: "num" }, "Applied"),
      el("th", {}, "Result"), el("th", { class: "num" }, "Resumed"), el("th", { class: "num" }, "Waited"))),
    el("tbody", {}, e.holds.map((h) => holdRow(h, now)))), hidden];
}

function renderEvents(data) {
  const body = document.querySelector("#events tbody");
  body.replaceChildren();
  if (!data.events.length) {
    body.append(el("tr", {}, el("td", { colspan: 5, class: "muted" }, "No active or recent grid events.")));
    return;
  }
  for (const e of data.events) {
    body.append(el("tr", { "data-event": e.event_id },
      el("td", {}, el("div", { class: "task" }, e.event_id), el("div", { class: "sub" }, `${e.source}${e.program ? ` · ${e.program}` : ""}${e.test_event ? " · TEST" : ""}`)),
      el("td", {}, el("span", { class: `pill ${e.status}` }, e.status)),
      el("td", { class: "num" }, when(e.start, data.now)),
      el("td", { class: "num" }, when(e.end, data.now)),
      el("td", {}, e.asks)));
    body.append(el("tr", { class: "held", "data-event-holds": e.event_id }, el("td", { colspan: 5 }, renderHolds(e, data.now))));
  }
}

function renderSavings(data) {
  const body = document.querySelector("#savings tbody");
  const s = data.savings;
  body.replaceChildren();
  document.getElementById("savings-note").textContent =
    `${when(s.since, data.now)} to ${when(s.until, data.now)}; saved = against starting when each wait began, in its home zone. ` +
    "Average and marginal intensities are never added together.";
  if (s.per_dag === null) {
    body.append(el("tr", {}, el("td", { colspan: 7, class: "bad" }, `No ledger: ${s.error}`)));
    return;
  }
  if (!s.per_dag.length) {
    body.append(el("tr", {}, el("td", { colspan: 7, class: "muted" }, "No grid-aware run in the last 30 days.")));
    return;
  }
  for (const r of s.per_dag) {
    const cost = Object.entries(r.saved_cost).map(([c, v]) => `${v.toFixed(2)} ${c}`).join(", ") || "—";
    body.append(el("tr", { "data-dag": r.dag_id },
      el("td", {}, el("div", { class: "task" }, r.dag_id), r.intensity_kind ? el("div", { class: "sub" }, r.intensity_kind) : null),
      el("td", { class: "num" }, r.runs),
      el("td", { class: `num ${r.saved_kg > 0 ? "good" : r.saved_kg < 0 ? "bad" : ""}` }, `${kg(r.saved_kg)} CO₂e`),
      el("td", { class: "num" }, `${kg(r.emitted_kg)} CO₂e`),
      el("td", { class: "num" }, cost),
      el("td", { class: "num" }, r.clean_share === null ? "—" : `${pct(r.clean_share)} (${r.clean_runs} of ${r.runs_compared})`),
      el("td", { class: `num ${r.missed_deadlines ? "bad" : ""}` }, r.missed_deadlines)));
  }
}

function renderSlos(data) {
  const section = document.getElementById("slos-section");
  section.hidden = !data.slos.length;
  const body = document.querySelector("#slos tbody");
  body.replaceChildren(...data.slos.map((s) => el("tr", { "data-slo": s.name },
    el("td", {}, el("div", { class: "task" }, s.name), el("div", { class: "sub" }, s.dag_ids.join(", "))),
    el("td", {}, el("span", { class: `pill ${s.breached ? "active" : ""}` }, s.breached ? "breached" : s.judged ? "holds" : "not judged")),
    el("td", {}, s.text))));
}

async function renderFlex() {
  const body = document.querySelector("#flex tbody");
  const response = await fetch("api/flex", { credentials: "same-origin", cache: "no-store" });
  if (!response.ok) {
    body.replaceChildren(el("tr", {}, el("td", { colspan: 6, class: "bad" }, `could not read: HTTP ${response.status}`)));
    return;
  }
  const report = await response.json();
  const zones = Object.entries(report.zones);
  document.getElementById("flex-note").textContent = ["Critical work is never counted as sheddable.", ...report.notes].join(" ");
  if (!zones.length) {
    body.replaceChildren(el("tr", {}, el("td", { colspan: 6, class: "muted" }, "No grid-aware work running or waiting.")));
    return;
  }
  const kw = (v) => `${Math.round(v * 10) / 10} kW`;
  const shed = (z, m) => {
    const parts = ["flexible", "batch"].filter((c) => z.shed_kw[c][m] > 0).map((c) => `${c} ${kw(z.shed_kw[c][m])}`);
    const total = ["flexible", "batch"].reduce((a, c) => a + z.shed_kw[c][m], 0);
    return [el("div", {}, kw(total)), parts.length ? el("div", { class: "sub" }, parts.join(", ")) : null];
  };
  body.replaceChildren(...zones.map(([zone, z]) => el("tr", { "data-flex-zone": zone },
    el("td", { class: "task" }, zone),
    el("td", { class: "num" }, kw(z.power_now_kw)),
    el("td", { class: "num" }, kw(Math.max(0, ...z.planned_kw.map((p) => p[1])))),
    el("td", { class: "num" }, shed(z, "5")), el("td", { class: "num" }, shed(z, "15")), el("td", { class: "num" }, shed(z, "60")))));
}

const REPORT_FILES = [["report.html", "report"], ["summary.json", "summary.json"], ["records.csv", "records.csv"]];
// Airflow's plugin frame is sandboxed without allow-popups: inside it a report opens in the frame (Back returns).
const IN_AIRFLOW_FRAME = window.top !== window.self;

async function renderReports() {
  const body = document.querySelector("#reports tbody");
  const response = await fetch("api/reports", { credentials: "same-origin", cache: "no-store" });
  if (!response.ok) {
    body.replaceChildren(el("tr", {}, el("td", { colspan: 3, class: "bad" }, `could not read: HTTP ${response.status}`)));
    return;
  }
  const shelf = await response.json();
  const note = document.getElementById("reports-note");
  note.textContent = shelf.location ? `From ${shelf.location}, the last 30 days written.` : "";
  if (shelf.hidden) note.textContent += ` ${shelf.hidden} more cover DAGs you may not read.`;
  if (shelf.error) {
    body.replaceChildren(el("tr", {}, el("td", { colspan: 3, class: "bad" }, `No reports: ${shelf.error}`)));
    return;
  }
  if (!shelf.items.length) {
    body.replaceChildren(el("tr", {}, el("td", { colspan: 3, class: "muted" }, "No daily report written yet (DailyCarbonReportOperator, gridaware report).")));
    return;
  }
  body.replaceChildren(...shelf.items.map((r) => el("tr", { "data-report": r.day },
    el("td", { class: "task" }, r.day),
    el("td", {}, r.headline || el("span", { class: "muted" }, "no summary"),
      r.slos_breached.length ? el("div", { class: "bad small" }, `SLO breached: ${r.slos_breached.join(", ")}`) : null),
    el("td", { class: "files" }, REPORT_FILES.filter(([f]) => r.files[f]).map(([f, label]) =>
      el("a", { href: r.files[f], target: IN_AIRFLOW_FRAME ? null : "_blank", rel: "noopener" }, label))))));
}

async function renderFocus() {
  if (!focus) return;
  const card = document.getElementById("focus");
  card.hidden = false;
  const url = `api/decision/${encodeURIComponent(focus.dag_id)}/${encodeURIComponent(focus.run_id)}/${encodeURIComponent(focus.task_id)}?map_index=${focus.map_index}`;
  const response = await fetch(url, { credentials: "same-origin" });
  const body = await response.json().catch(() => ({}));
  const title = el("h3", {}, `Decision of ${focus.dag_id}.${focus.task_id}`);
  if (!response.ok) {
    card.replaceChildren(title, el("p", { class: "bad" }, body.detail || `HTTP ${response.status}`));
    return;
  }
  if (body.status === "waiting") {
    const t = body.task;
    card.replaceChildren(title, el("p", { class: "decision" }, t.reason),
      el("p", { class: "sub" }, `waiting since ${when(t.waiting_since, t.decided_at)} · planned start ${when(t.planned_start, t.decided_at)} · latest start ${when(t.latest_start, t.decided_at)}`));
  } else {
    card.replaceChildren(title, ...body.tries.map((r) => el("div", {},
      el("p", { class: "decision" }, `try ${r.try_number} (${r.state}): ${r.reason}`),
      el("p", { class: "sub" }, `ran ${when(r.started, r.ended)} to ${hhmm(r.ended)} UTC in ${r.zone}` +
        (r.intensity_g_per_kwh !== null ? `: ${Math.round(r.intensity_g_per_kwh)} gCO2/kWh` : "") +
        (r.counterfactual_intensity_g_per_kwh !== null ? ` vs ${Math.round(r.counterfactual_intensity_g_per_kwh)} had it started at once` : "") +
        (r.saved_kg !== null ? `; saved ${kg(r.saved_kg)} CO₂e` : "")))));
  }
}

let timer = null;
async function load() {
  clearTimeout(timer);
  try {
    const response = await fetch("api/grid", { credentials: "same-origin", cache: "no-store" });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error(`${response.status}: ${body.detail || response.statusText}`);
    }
    const data = await response.json();
    renderZones(data);
    renderWaiting(data);
    renderEvents(data);
    renderSavings(data);
    renderSlos(data);
    renderFlex().catch((error) => console.error("fleet flexibility", error));
    renderReports().catch((error) => console.error("daily reports", error));
    const problems = document.getElementById("problems");
    problems.hidden = !data.problems.length;
    problems.replaceChildren(...data.problems.map((p) => el("div", {}, p)));
    document.getElementById("updated").textContent = `updated ${when(data.now, data.now)}`;
  } catch (error) {
    document.getElementById("updated").textContent = `could not refresh: ${error.message}`;
  } finally {
    timer = setTimeout(load, REFRESH_MS);
  }
}

// Follow Airflow's colour mode when it is switched in another tab or in the surrounding UI.
window.addEventListener("storage", (event) => {
  if (event.key !== "theme") return;
  let t = event.newValue;
  if (!t || t === "system") t = matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
  document.documentElement.dataset.theme = t;
});
document.getElementById("refresh").addEventListener("click", load);
load();
renderFocus();
