// Yangyi dashboards: sign-in, sign-out, unsafe requests with the CSRF header, ECharts charts.
"use strict";

function csrfHeaders() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? { [meta.dataset.header]: meta.content } : {};
}

// JSON POST/PATCH to the API with the session cookie and the CSRF header; throws on HTTP errors.
async function api(method, url, body) {
  const res = await fetch(url, {
    method, credentials: "same-origin",
    headers: Object.assign({ "Content-Type": "application/json", "Accept": "application/json" }, csrfHeaders()),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!res.ok) {
    let detail = res.statusText;
    try { detail = (await res.json()).detail || detail; } catch (e) { /* not JSON */ }
    const err = new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
    err.status = res.status;
    throw err;
  }
  return res.status === 204 ? null : res.json();
}
window.yangyiApi = api;

// The bureau's registry workbook: upload the bytes, show the row-by-row report.
function setupImport() {
  const form = document.getElementById("import-form");
  if (!form) return;
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const file = form.elements.file.files[0];
    if (!file) return;
    const dry = form.elements.dry_run.checked;
    const summary = document.getElementById("import-summary");
    const table = document.getElementById("import-problems");
    const res = await fetch(`/api/v1/registry/import?dry_run=${dry}`, {
      method: "POST", credentials: "same-origin", body: await file.arrayBuffer(),
      headers: Object.assign({ "Content-Type": file.type || "application/octet-stream", "Accept": "application/json" },
                             csrfHeaders()),
    });
    const report = await res.json();
    if (!res.ok) { summary.textContent = report.detail || res.statusText; table.hidden = true; return; }
    const counts = Object.keys(report.rows).map((s) =>
      `${s}: ${report.rows[s]} / +${report.added[s] || 0} ~${report.updated[s] || 0} =${report.unchanged[s] || 0}`);
    summary.textContent = `${counts.join("; ")} — ${report.problems.length} problems 问题 — ` +
      (report.written ? "✓ written 已写入" : (report.dry_run ? "dry run 试导入" : "nothing written 未写入"));
    const body = table.querySelector("tbody");
    body.replaceChildren(...report.problems.map((p) => {
      const tr = document.createElement("tr");
      for (const v of [p.sheet, p.row, p.column, p.message]) {
        const td = document.createElement("td"); td.textContent = v; tr.appendChild(td);
      }
      return tr;
    }));
    table.hidden = report.problems.length === 0;
  });
}

function setupLogin() {
  const form = document.getElementById("login-form");
  if (!form) return;
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const box = document.getElementById("login-error");
    box.hidden = true;
    const data = new FormData(form);
    try {
      await api("POST", "/api/v1/auth/login", { username: data.get("username"), password: data.get("password") });
      window.location.assign(form.dataset.next || "/");
    } catch (err) {
      box.textContent = form.dataset["msg-" + err.status] || form.getAttribute("data-msg-" + err.status)
        || form.dataset.msgOther || err.message;
      box.hidden = false;
    }
  });
}

function setupLogout() {
  const btn = document.getElementById("logout");
  if (!btn) return;
  btn.addEventListener("click", async () => {
    try { await api("POST", "/api/v1/auth/logout"); } finally { window.location.assign("/login"); }
  });
}

function chartOf(el) {
  return echarts.getInstanceByDom(el) || echarts.init(el, null, { renderer: "canvas" });
}

function drawCameraChart() {
  const el = document.getElementById("camera-chart");
  const data = document.getElementById("camera-data");
  if (!el || !data || !window.echarts) return;
  const d = JSON.parse(data.textContent);
  const series = [{ name: d.names.cards, type: "bar", data: d.cards }];
  if (d.camera) series.push({ name: d.names.camera, type: "bar", data: d.camera });
  chartOf(el).setOption({
    animation: false, tooltip: { trigger: "axis" }, legend: { top: 0 },
    grid: { left: 36, right: 12, top: 30, bottom: 24 },
    xAxis: { type: "category", data: d.hours }, yAxis: { type: "value", minInterval: 1 }, series,
  });
}

const LEVEL_COLOURS = { warn: "#e0a100", alarm: "#d64545", alarm2: "#8e1b1b" };

// One sensor channel over 24 h: mean line, min-max band, thresholds drawn as dashed lines.
async function drawSensor(fig) {
  const res = await fetch(fig.dataset.url, { credentials: "same-origin" });
  if (!res.ok) return;
  const s = await res.json();
  const times = s.points.map((p) => p.time);
  const lines = s.thresholds.map((th) => ({
    yAxis: th.value, name: (th.level || th.name || "") + " " + th.value,
    lineStyle: { type: "dashed", color: LEVEL_COLOURS[th.level] || "#888" },
    label: { formatter: fig.dataset.thresholdLabel + " " + th.value + (s.unit ? " " + s.unit : ""), position: "insideEndTop" },
  }));
  const max = Math.max(...s.points.map((p) => p.max), ...s.thresholds.map((t) => t.value * 1.1), 0);
  chartOf(fig.querySelector(".chart")).setOption({
    animation: false, tooltip: { trigger: "axis" },
    grid: { left: 44, right: 16, top: 16, bottom: 24 },
    xAxis: { type: "time" }, yAxis: { type: "value", name: s.unit || "", max: Math.ceil(max) || null },
    series: [
      { name: "max", type: "line", data: s.points.map((p) => [p.time, p.max]), showSymbol: false, lineStyle: { opacity: 0.3 } },
      { name: "mean", type: "line", data: s.points.map((p) => [p.time, p.mean]), showSymbol: false,
        markLine: { symbol: "none", silent: true, data: lines } },
      { name: "min", type: "line", data: s.points.map((p) => [p.time, p.min]), showSymbol: false, lineStyle: { opacity: 0.3 } },
    ],
  }, true);
  fig.dataset.drawn = String(times.length);
  fig.dataset.thresholds = String(s.thresholds.length);
}

const SENSOR_REFRESH_MS = 60000;

function setupCharts() {
  if (!window.echarts) return;
  drawCameraChart();
  const figs = Array.from(document.querySelectorAll("figure.sensor"));
  const refresh = () => figs.forEach((f) => drawSensor(f).catch((e) => console.warn("chart", e)));
  refresh();
  if (figs.length) setInterval(refresh, SENSOR_REFRESH_MS);
  window.addEventListener("resize", () => document.querySelectorAll(".chart").forEach((el) => {
    const c = echarts.getInstanceByDom(el); if (c) c.resize();
  }));
}

// ---- alerts: acknowledge, resolve, live updates over server-sent events --------------------------------

function refreshAlerts(changedId) {
  if (!document.getElementById("alerts-body") || !window.htmx) return Promise.resolve();
  return htmx.ajax("GET", window.location.pathname + window.location.search,
    { target: "#alerts-body", select: "#alerts-body", swap: "outerHTML" }).then(() => {
    const el = changedId && document.getElementById("alert-" + changedId);
    if (el) { el.classList.add("flash"); setTimeout(() => el.classList.remove("flash"), 1500); }
  });
}

function showFailure(article, err) {
  const box = article.querySelector("[data-failed]");
  if (!box) return;
  box.textContent = box.dataset.failed + ": " + err.message;
  box.hidden = false;
}

function setupAlerts() {
  if (!document.getElementById("alerts-body")) return;
  document.addEventListener("click", async (ev) => {
    const btn = ev.target.closest("button.ack");
    if (!btn) return;
    btn.disabled = true;
    const article = btn.closest("article.alert");
    try { await api("POST", btn.dataset.url, {}); await refreshAlerts(article.dataset.alert); }
    catch (err) { btn.disabled = false; showFailure(article, err); }
  });
  document.addEventListener("submit", async (ev) => {
    const form = ev.target.closest("form.resolve-form");
    if (!form) return;
    ev.preventDefault();
    const article = form.closest("article.alert");
    const data = new FormData(form);
    try {
      await api("POST", form.dataset.url, { note: data.get("note") || null, on_site: data.get("on_site") === "on" });
      await refreshAlerts(article.dataset.alert);
    } catch (err) { showFailure(article, err); }
  });
  const live = document.getElementById("live-state");
  const source = liveEvents();
  source.onopen = () => { live.textContent = "● " + live.dataset.live; live.dataset.connected = "1"; };
  source.onerror = () => { live.textContent = live.dataset.lost; live.dataset.connected = "0"; };
  source.addEventListener("alert", (ev) => {
    let id = null;
    try { id = JSON.parse(ev.data).alert_id; } catch (e) { /* keep null */ }
    refreshAlerts(id);
  });
}

// ---- live events: one stream per signed-in page; in-app messages addressed to this person -------------

let liveSource = null;
function liveEvents() {
  if (!liveSource) liveSource = new EventSource("/events/alerts");
  return liveSource;
}

function setupInAppMessages() {
  const box = document.getElementById("inapp-toasts");
  if (!box || document.body.dataset.live !== "1") return;
  liveEvents().addEventListener("inapp", (ev) => {
    let msg;
    try { msg = JSON.parse(ev.data); } catch (e) { return; }
    const toast = document.createElement("div");
    toast.className = "toast sev-" + (msg.severity || "info");
    toast.setAttribute("role", "alert");
    toast.dataset.alert = msg.alert_id;
    const title = document.createElement("strong");
    title.textContent = msg.title || "";
    const text = document.createElement("p");
    text.textContent = msg.text || "";
    toast.append(title, text);
    if (msg.link) {
      const a = document.createElement("a");
      a.href = msg.link; a.textContent = box.dataset.open;
      toast.append(a, " ");
    }
    const close = document.createElement("button");
    close.type = "button"; close.className = "secondary"; close.textContent = box.dataset.close;
    close.addEventListener("click", () => toast.remove());
    toast.append(close);
    box.prepend(toast);
  });
}

// ---- ledger: record an inspection through the ledger API -------------------------------------------------

function setupInspectionForm() {
  const form = document.getElementById("inspection-form");
  if (!form) return;
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const box = document.getElementById("inspection-error");
    box.hidden = true;
    const data = new FormData(form);
    const items = Array.from(form.querySelectorAll("tr.check-item")).map((row, i) => ({
      area: row.dataset.area, item: row.dataset.item, passed: data.get("item" + i) !== "fail",
    }));
    const failed = items.findIndex((it) => !it.passed);
    const problem = (data.get("problem") || "").trim();
    const body = { kind: data.get("kind"), inspected_at: new Date().toISOString(), items,
      note: (data.get("note") || "").trim() || null, problems: [], samples: [] };
    if (body.kind === "daily") {
      const dishes = (data.get("dishes") || "").trim() || null;
      data.getAll("sample").forEach((meal) => body.samples.push({ meal, taken_at: body.inspected_at, dishes }));
    }
    if (problem) {
      body.problems.push({ description: problem, item_index: failed >= 0 ? failed : null, rectification: "fixed_at_once" });
    }
    try {
      await api("POST", form.dataset.url, body);
      await htmx.ajax("GET", window.location.pathname, { target: "#inspections", select: "#inspections", swap: "outerHTML" });
      form.reset();
      form.dataset.savedAt = String(Date.now());
    } catch (err) { box.textContent = err.message; box.hidden = false; }
  });
}

// ---- subsidy: settle, sign, draft notices (bureau administrator) -----------------------------------------

function setupSubsidy() {
  const box = document.getElementById("subsidy-actions");
  if (!box) return;
  const month = box.dataset.month;
  box.addEventListener("click", async (ev) => {
    const btn = ev.target.closest("button[data-action]");
    if (!btn) return;
    btn.disabled = true;
    const base = "/api/v1/subsidy/settlements/" + month;
    const reason = document.getElementById("reopen-reason");
    const urls = {
      settle: [base + "/runs", {}],
      sign: [base + "/sign", { run_id: Number(btn.dataset.run) }],
      reopen: [base + "/reopen", { reason: reason ? reason.value.trim() : "" }],
      corrections: [base + "/corrections", {}],
      draft: ["/api/v1/subsidy/notices/" + month + "/draft", {}],
    };
    const [url, body] = urls[btn.dataset.action];
    const error = document.getElementById("subsidy-error");
    error.hidden = true;
    if (btn.dataset.action === "reopen" && reason && !reason.reportValidity()) { btn.disabled = false; return; }
    try {
      const out = await api("POST", url, body);
      if (btn.dataset.action === "corrections") {
        const done = document.getElementById("subsidy-done");
        done.textContent = done.dataset.template.replace("{into}", out.into).replace("{lines}", out.lines)
          .replace("{delta}", out.delta);
        done.hidden = false; btn.disabled = false;
        return;
      }
      window.location.reload();
    } catch (err) {
      error.textContent = err.message; error.hidden = false; btn.disabled = false;
    }
  });
}

function setupNoticePublish() {
  document.querySelectorAll("form.publish-notice").forEach((form) => {
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const error = form.querySelector(".error");
      error.hidden = true;
      try {
        await api("POST", form.dataset.url, { published_on: new FormData(form).get("published_on") });
        window.location.reload();
      } catch (err) { error.textContent = err.message; error.hidden = false; }
    });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  setupLogin(); setupLogout(); setupCharts(); setupInAppMessages(); setupAlerts(); setupInspectionForm(); setupSubsidy(); setupNoticePublish(); setupImport();
});
