// gatekeeper web pages: plain JavaScript, no build step. Every page fetches the JSON API and renders it.
"use strict";
const gk = {};

// el("a", {href: "/x", class: "y"}, "text", child...) -- text is always set as text, never as HTML.
gk.el = function (tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
};
const el = gk.el;

gk.fetchJSON = async function (url) {
  const resp = await fetch(url, {cache: "no-store"});
  const data = await resp.json();
  if (!resp.ok) throw new Error(data.error || resp.statusText);
  return data;
};

gk.duration = function (seconds) {
  if (seconds === null || seconds === undefined) return "?";
  seconds = Math.round(seconds);
  const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
  return h ? `${h}h${String(m).padStart(2, "0")}m` : m ? `${m}m${String(s).padStart(2, "0")}s` : `${s}s`;
};
gk.time = (t) => (t ? new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19) : "");

gk.header = function () {
  const nav = el("header", {},
    el("a", {href: "/", class: "title"}, "gatekeeper"),
    el("a", {href: "/"}, "Status"), el("a", {href: "/builds"}, "Builds"), el("a", {href: "/nodes"}, "Nodes"),
    el("a", {href: "/images"}, "Images"), el("a", {href: "/holds"}, "Held nodes"),
    el("a", {href: "/signatures"}, "Known bugs"));
  document.body.prepend(nav);
};

gk.showError = function (target, err) {
  target.replaceChildren(el("p", {class: "error"}, `cannot load: ${err.message}`));
};

// -- status page ----------------------------------------------------------------------------------------------
gk.renderJob = function (job) {
  const label = job.result || job.state;
  const link = job.state === "running" && job.console_url ? el("a", {href: job.console_url}, job.name)
    : job.build_url ? el("a", {href: job.build_url}, job.name) : job.name;
  const progress = job.state === "completed" ? 100 : (job.progress || 0);
  const timing = job.state === "running" ? `${gk.duration(job.elapsed)} / ${gk.duration(job.estimated)}`
    : job.state === "completed" ? gk.duration(job.elapsed) : job.estimated ? `~${gk.duration(job.estimated)}` : "";
  const row = el("div", {class: "job", "data-job": job.name, "data-state": job.state},
    el("span", {}, link, job.voting ? "" : " (non-voting)"),
    el("span", {class: `state-${job.state} result-${job.result || ""}`}, label),
    job.state === "running" ? el("div", {class: "bar", title: timing}, el("div", {style: `width:${progress}%`}))
      : el("span", {class: "muted"}, timing));
  const details = [];
  if (job.state === "running") {
    const node = job.node ? [job.node.name, job.node.provider].filter(Boolean).join(" on ") : "";
    details.push(el("div", {class: "job-detail running"},
      el("span", {class: "elapsed"}, `running ${gk.duration(job.elapsed)}`),
      job.estimated ? ` of ~${gk.duration(job.estimated)}` : "",
      node ? el("span", {class: "node", "data-node": job.node.name}, ` · node ${node}`) : "",
      job.console_url ? [" · ", el("a", {href: job.build_url || job.console_url, class: "console-link",
        "data-console": job.console_url}, "live console")] : ""));
  }
  if (job.summary) details.push(gk.renderDiagnosis(job, "job-detail"));
  return details.length ? el("div", {class: "job-block"}, row, details) : row;
};

// a failed build's class, summary and matched known bugs (the same on the status and build pages)
gk.renderDiagnosis = function (b, cls) {
  const bugs = (b.signatures || []).map((s) => el("li", {class: "signature", "data-signature": s.id},
    "matches known bug ", s.url ? el("a", {href: s.url}, String(s.id)) : String(s.id), `: ${s.title}; `,
    "a recheck is likely to pass"));
  return el("div", {class: `${cls} diagnosis`},
    b.failure_class ? el("div", {class: `failure-class class-${b.failure_class}`},
      b.failure_class === "infrastructure" ? "infrastructure failure (not the change's fault)"
        : b.failure_class === "change" ? "failed in the job's own steps" : "cause unknown") : null,
    b.summary ? el("pre", {class: "summary"}, b.summary) : null,
    bugs.length ? el("ul", {class: "signatures"}, bugs) : null);
};

gk.renderItem = function (item) {
  const c = item.change;
  const classes = ["item", item.failing ? "failing" : "", item.active ? "" : "inactive", item.live ? "" : "nonlive"];
  const title = c.url ? el("a", {href: c.url}, c.key) : c.key;
  return el("div", {class: classes.join(" "), "data-change": c.key},
    el("div", {class: "head"}, el("span", {}, el("b", {}, title), " ", c.project),
      el("span", {class: "meta"}, item.eta && item.eta.p50 !== null
        ? el("span", {class: "eta", title: `merges in ${Math.round(100 * item.eta.merge_probability)}% of simulations`},
          `ETA ${gk.duration(item.eta.p50)}–${gk.duration(item.eta.p90)}`)
        : item.remaining_time === null ? "" : `${gk.duration(item.remaining_time)} left`)),
    c.subject ? el("div", {class: "meta"}, c.subject) : null,
    el("div", {class: "meta"}, `in queue ${gk.duration(item.resident_time)}`,
      item.item_ahead ? ` · behind ${item.item_ahead}` : "", item.live ? "" : " · not tested on its own"),
    item.failing_reasons.length ? el("div", {class: "reasons"}, item.failing_reasons.join("; ")) : null,
    item.live ? item.jobs.map(gk.renderJob) : null);
};

gk.renderStatus = function (status, target) {
  const pipes = status.pipelines.map((p) => el("section", {class: "pipeline", "data-pipeline": p.name},
    el("h2", {}, p.name, el("span", {class: "muted"}, ` ${p.manager}`)),
    p.description ? el("div", {class: "meta"}, p.description) : null,
    p.queues.length ? p.queues.map((q) => el("div", {class: "queue"},
      el("h3", {}, `queue ${q.name}`, q.window ? ` (window ${q.window})` : ""), q.items.map(gk.renderItem)))
      : el("p", {class: "muted"}, "empty")));
  const depth = Object.entries(status.event_queues).map(([k, v]) => `${k}: ${v}`).join(" · ");
  const classes = status.failure_classes ? " · recent failures: " + Object.entries(status.failure_classes)
    .map(([k, v]) => `${k} ${v}`).join(", ") : "";
  const outliers = (status.provider_outliers || []).map((o) => el("p", {class: "outlier", "data-provider": o.provider},
    `provider ${o.provider}: ${o.description}; failures there may not be the changes' fault`));
  const dead = status.dead_letters && status.dead_letters.dead ? [el("p", {class: "outlier", id: "dead-letters"},
    `${status.dead_letters.dead} event(s) set aside after failing again and again: see 'gatekeeper events list' ` +
    "or /api/v1/events/dead-letters; replay or discard them there")] : [];
  const providers = (status.providers || []).length ? [el("p", {class: "muted", id: "providers"}, "providers: ",
    ...status.providers.map((p) => el("span", {class: "provider", "data-provider": p.name, "data-state":
      p.drained ? "drained" : (p.state || "healthy")},
      `${p.name} ${p.drained ? "drained" + (p.drain_reason ? ` (${p.drain_reason})` : "") : (p.state || "healthy")}` +
      (p.backing_off_until && !p.drained ? ` until ${gk.time(p.backing_off_until)}` : "") +
      (p.error_rate ? `, ${Math.round(p.error_rate * 100)}% of recent boots failed` : "") + "  ")))] : [];
  target.replaceChildren(...dead, ...outliers, ...providers,
    el("p", {class: "muted", id: "counters"}, `events pending: ${depth}${classes} · updated ${gk.time(status.generated)}`),
    el("div", {class: "pipelines"}, pipes));
};

gk.statusPage = function () {
  gk.header();
  const target = document.getElementById("status");
  const refresh = async () => {
    try { gk.renderStatus(await gk.fetchJSON("/api/v1/status"), target); } catch (err) { gk.showError(target, err); }
  };
  refresh();
  setInterval(refresh, 5000);
};

// -- tables -------------------------------------------------------------------------------------------------
gk.table = function (columns, rows) {
  return el("table", {}, el("tr", {}, columns.map(([name]) => el("th", {}, name))),
    rows.map((r) => el("tr", {}, columns.map(([, cell]) => el("td", {}, cell(r))))));
};

gk.buildsPage = async function () {
  gk.header();
  const target = document.getElementById("builds");
  const params = new URLSearchParams(location.search);
  const form = el("form", {class: "filters"}, ["project", "job", "result", "change", "pipeline"].map((name) =>
    el("label", {}, `${name} `, el("input", {name, value: params.get(name) || "", size: 12}))),
    el("button", {type: "submit"}, "Filter"));
  const results = el("div", {});
  target.replaceChildren(form, results);
  try {
    const rows = await gk.fetchJSON(`/api/v1/builds?${params}`);
    results.replaceChildren(rows.length ? gk.table([
      ["build", (r) => el("a", {href: `/build/${r.uuid}`}, r.uuid.slice(0, 10))],
      ["job", (r) => r.job], ["project", (r) => r.project], ["change", (r) => r.change ? `${r.change},${r.patchset}` : (r.changes || r.ref || "")],
      ["pipeline", (r) => r.pipeline],
      ["result", (r) => el("span", {class: `result-${r.result}`}, r.result, r.final ? "" : " (retried)")],
      ["duration", (r) => gk.duration(r.duration)], ["ended", (r) => gk.time(r.end_time)],
      ["node", (r) => r.node_provider], ["logs", (r) => r.log_url ? el("a", {href: r.log_url}, "logs") : ""],
    ], rows) : el("p", {class: "muted"}, "no builds match"));
  } catch (err) { gk.showError(results, err); }
};

gk.buildPage = async function () {
  gk.header();
  const target = document.getElementById("build");
  const id = decodeURIComponent(location.pathname.split("/").pop());
  try {
    const b = await gk.fetchJSON(`/api/v1/builds/${encodeURIComponent(id)}`);
    const rows = [["job", b.job], ["project", b.project], ["change", b.change ? `${b.change},${b.patchset}` : (b.changes || b.ref || "")],
      ...(b.newrev ? [["revision", `${b.ref} at ${b.newrev}`]] : []),
      ["pipeline", b.pipeline], ["result", el("span", {class: `result-${b.result}`}, b.result || b.state)],
      ["message", b.message || ""], ["attempt", `${b.attempt}${b.final === false ? " (retried)" : ""}`],
      ["started", gk.time(b.start_time)], ["ended", gk.time(b.end_time)],
      ["node", [b.node_name, b.node_label, b.node_provider].filter(Boolean).join(" · ")],
      ["logs", b.log_url ? el("a", {href: b.log_url, id: "log-url"}, b.log_url) : "none"]];
    const files = el("ul", {id: "log-files"}, b.logs.map((f) => el("li", {}, el("a", {href: f.url}, f.name),
      el("span", {class: "muted"}, ` ${f.size} bytes`))));
    if (b.state === "running" && b.elapsed !== undefined) rows.push(["running for", gk.duration(b.elapsed)]);
    const parts = [el("h2", {}, `build ${b.uuid}`),
      el("table", {}, rows.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v)))),
      ...(b.summary || (b.signatures || []).length ? [el("h3", {}, "why it failed"), gk.renderDiagnosis(b, "build")]
        : []),
      el("h3", {}, "log files"), b.logs.length ? files : el("p", {class: "muted"}, "none listed")];
    if (b.console_url) {
      const pre = el("pre", {class: "console"}, "");
      parts.push(el("h3", {}, "live console"), pre);
      gk.followConsole(b.console_url, pre);
    }
    target.replaceChildren(...parts);
  } catch (err) { gk.showError(target, err); }
};

gk.followConsole = function (url, pre) {
  // server-sent events: each message is a batch of console lines; "end" when the build's console closes
  const source = new EventSource(url);
  let opened = false;
  source.onopen = () => {
    if (opened) pre.textContent = "";  // a reconnect replays the console from its start
    opened = true;
  };
  source.onmessage = (event) => {
    pre.append(event.data + "\n");
    pre.scrollTop = pre.scrollHeight;
  };
  source.addEventListener("end", () => {
    source.close();
    pre.append("[console ended]");
    pre.dataset.ended = "true";
  });
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) pre.append("\n[console unavailable]");
  };
};

// -- known bugs: each signature with its hits per day over the last week and its newest hits ------------------
gk.signaturesPage = async function () {
  gk.header();
  const target = document.getElementById("signatures");
  try {
    const rows = await gk.fetchJSON("/api/v1/signatures");
    target.replaceChildren(el("h2", {}, "known bugs"), rows.length ? gk.table([
      ["bug", (r) => r.url ? el("a", {href: r.url}, String(r.id)) : String(r.id)],
      ["title", (r) => [r.title, r.in_layout ? "" : el("span", {class: "muted"}, " (no longer in the layout)")]],
      ["hits per day, last 7", (r) => el("span", {class: "per-day", "data-signature": r.id}, r.per_day.join(" "))],
      ["24 h", (r) => r.day], ["7 days", (r) => r.week], ["kept", (r) => r.total],
      ["newest hits", (r) => el("ul", {}, r.recent.map((h) => el("li", {},
        el("a", {href: `/build/${h.build}`}, `${h.job} ${h.change || ""}`), ` ${gk.time(h.time)} on ${h.provider || "?"}`)))],
    ], rows) : el("p", {class: "muted"}, "no known-bug signatures in the layout"));
  } catch (err) { gk.showError(target, err); }
};

gk.listPage = async function (targetId, url, columns, pick) {
  gk.header();
  const target = document.getElementById(targetId);
  const refresh = async () => {
    try {
      const data = await gk.fetchJSON(url);
      const rows = pick ? pick(data) : data;
      target.replaceChildren(...(Array.isArray(rows[0]) ? rows : [rows]).map((r, i) => r.length ?
        gk.table(columns[i] || columns[0], r) : el("p", {class: "muted"}, "none")));
    } catch (err) { gk.showError(target, err); }
  };
  refresh();
  setInterval(refresh, 10000);
};

gk.nodeColumns = [["id", (n) => n.id], ["state", (n) => n.state], ["label", (n) => n.label],
  ["provider", (n) => n.provider], ["server id", (n) => n.external_id || ""], ["address", (n) => n.address || ""],
  ["age", (n) => gk.duration(Date.now() / 1000 - n.state_time)], ["locked", (n) => (n.locked ? "yes" : "no")],
  ["comment", (n) => n.hold_reason || n.hold_requested || n.comment || ""]];
