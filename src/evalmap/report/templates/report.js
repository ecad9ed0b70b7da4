/* evalmap report: samples browser. No network: job files are local <script>s (file:// forbids fetch). */
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("evalmap-data").textContent);
  var JOBS = {};
  DATA.jobs.forEach(function (j) { JOBS[j.key] = j; });
  var PAGE = DATA.pageSize || 25;
  var loaded = {};      // key -> rows
  var waiting = {};     // key -> [callbacks]
  var state = { key: null, page: 0, rows: [], filtered: [] };

  var $ = function (id) { return document.getElementById(id); };
  var jobSelect = $("job-select"), verdictSel = $("verdict-filter"), statusSel = $("status-filter");
  var search = $("search"), list = $("sample-list"), info = $("page-info"), summary = $("job-summary");

  function fmt(v, d) { return (typeof v === "number" && isFinite(v)) ? v.toFixed(d === undefined ? 3 : d) : "n/a"; }

  // called by each samples/<key>.js file
  window.evalmapSamples = function (key, rows) {
    loaded[key] = rows;
    (waiting[key] || []).forEach(function (cb) { cb(rows); });
    delete waiting[key];
  };

  function load(key, cb) {
    if (loaded[key]) { cb(loaded[key]); return; }
    if (waiting[key]) { waiting[key].push(cb); return; }
    waiting[key] = [cb];
    var s = document.createElement("script");
    s.src = "samples/" + encodeURIComponent(key) + ".js";
    s.onerror = function () {
      delete waiting[key];
      list.textContent = "";
      var p = el("p", "empty-list", "Could not load samples/" + key + ".js: keep the samples/ folder next to index.html.");
      list.appendChild(p);
    };
    document.head.appendChild(s);
  }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }

  function show(value) {
    if (value === null || value === undefined) return "";
    if (typeof value === "string") return value;
    try { return JSON.stringify(value, null, 1); } catch (e) { return String(value); }
  }

  function outputText(output) {
    if (Array.isArray(output)) {
      if (output.every(function (o) { return typeof o === "string"; })) {
        return output.length === 1 ? output[0] : output.map(function (o, i) { return "#" + (i + 1) + "\n" + o; }).join("\n\n");
      }
    }
    return show(output);
  }

  function verdict(job, metrics) {
    if (!job.metric || job.lower_better || !metrics) return "unscored";
    var v = metrics[job.metric];
    if (v === true) v = 1;
    if (v === false) v = 0;
    if (typeof v !== "number" || isNaN(v)) return "unscored";
    if (v === 1) return "correct";
    if (v === 0) return "incorrect";
    return "partial";
  }

  function prepare(job, rows) {
    return rows.map(function (r) {
      var details = r[6] || {};
      var text = (r[0] + "\n" + r[1] + "\n" + outputText(r[2])).toLowerCase();
      return { item: r[0], prompt: r[1], output: r[2], extracted: r[3], target: r[4], metrics: r[5] || {},
               details: details, verdict: verdict(job, r[5]), status: details.status || "", text: text };
    });
  }

  function fillSelect() {
    var groups = {};
    DATA.jobs.forEach(function (j) {
      var g = groups[j.model];
      if (!g) { g = groups[j.model] = document.createElement("optgroup"); g.label = j.model; jobSelect.appendChild(g); }
      var o = document.createElement("option");
      o.value = j.key;
      var multi = DATA.jobs.some(function (x) { return x.run !== j.run; });
      o.textContent = j.dataset + (multi ? " [" + j.run + "]" : "") + " — " + (j.metric || "no score") + " " +
        fmt(j.value) + " ± " + fmt(j.stderr) + " (n=" + j.n + ")";
      g.appendChild(o);
    });
  }

  function open(key, scroll) {
    if (!JOBS[key]) return;
    jobSelect.value = key;
    state.key = key;
    info.textContent = "loading…";
    load(key, function (rows) {
      if (state.key !== key) return;
      var job = JOBS[key];
      state.rows = prepare(job, rows);
      var statuses = {};
      state.rows.forEach(function (r) { if (r.status) statuses[r.status] = (statuses[r.status] || 0) + 1; });
      statusSel.textContent = "";
      statusSel.appendChild(new Option("all", "all"));
      Object.keys(statuses).sort().forEach(function (s) { statusSel.appendChild(new Option(s + " (" + statuses[s] + ")", s)); });
      var counts = { correct: 0, incorrect: 0, partial: 0, unscored: 0 };
      state.rows.forEach(function (r) { counts[r.verdict]++; });
      summary.textContent = job.model + " · " + job.dataset + " · run " + job.run + " · " + (job.metric || "no metric") +
        " " + fmt(job.value) + " ± " + fmt(job.stderr) + " (n=" + job.n + ") · " + counts.correct + " correct, " +
        counts.incorrect + " incorrect, " + counts.partial + " partial, " + counts.unscored + " unscored";
      state.page = 0;
      apply();
      if (scroll) $("samples").scrollIntoView();
    });
  }

  function apply() {
    var v = verdictSel.value, st = statusSel.value, q = search.value.trim().toLowerCase();
    state.filtered = state.rows.filter(function (r) {
      return (v === "all" || r.verdict === v) && (st === "all" || r.status === st) && (!q || r.text.indexOf(q) >= 0);
    });
    var pages = Math.max(1, Math.ceil(state.filtered.length / PAGE));
    state.page = Math.min(state.page, pages - 1);
    render(pages);
  }

  function field(grid, label, value, cls, collapsed) {
    if (value === "" || value === null || value === undefined) return;
    grid.appendChild(el("b", null, label));
    var pre = el("pre", cls || null, value);
    if (collapsed) {
      var d = el("details");
      d.appendChild(el("summary", null, value.length + " characters"));
      d.appendChild(pre);
      grid.appendChild(d);
    } else {
      grid.appendChild(pre);
    }
  }

  // A judged conversation (MT-Bench): each turn's answer, the opponent's in pairwise mode, and the
  // judge's full reasoning with its rating or verdict right under it.
  function judgedTurns(g, d) {
    d.turns.forEach(function (t, i) {
      var n = "turn " + (t.turn || i + 1);
      field(g, n + " answer", d.answers[i], null, (d.answers[i] || "").length > 1500);
      if (Array.isArray(d.opponent_answers)) {
        field(g, n + " " + (d.opponent || "opponent"), d.opponent_answers[i], null, (d.opponent_answers[i] || "").length > 1500);
      }
      var texts = Array.isArray(t.judgments) ? t.judgments : [t.judgment];
      texts.forEach(function (text, k) {
        var label = n + " judge" + (texts.length > 1 ? " (order " + (k + 1) + ")" : "");
        var said = t.rating !== undefined ? "rating " + show(t.rating) : "outcome " + show(t.outcome);
        field(g, label, said + (t.failure ? " · " + t.failure : "") + "\n\n" + (text || ""), t.failure ? "err" : null);
      });
    });
    if (d.category) field(g, "category", d.category + (d.reference_known_wrong ? " · reference answer known to be wrong" : ""));
  }

  // A multiple-choice item scored by log-likelihood: each choice as text with its log-likelihood (and per
  // character, the acc_norm rule), the gold one and the picked ones marked; an earlier store kept no choice
  // text, so those show their number only.
  function isChoices(d) {
    return d && Array.isArray(d.logprobs) && typeof d.gold === "number";
  }

  function choicesView(g, d) {
    var t = el("table", "choices");
    var head = el("tr");
    var norm = Array.isArray(d.choice_chars);
    ["", "#", "choice", "log-likelihood"].concat(norm ? ["per char"] : []).forEach(function (h) { head.appendChild(el("th", null, h)); });
    t.appendChild(head);
    d.logprobs.forEach(function (ll, i) {
      var marks = [];
      if (i === d.gold) marks.push("✓ gold");
      if (i === d.pred) marks.push("← picked");
      if (norm && i === d.pred_norm && d.pred_norm !== d.pred) marks.push("← picked (per char)");
      var tr = el("tr", (i === d.gold ? "gold " : "") + (i === d.pred ? "picked" : "") + (i === d.pred && i !== d.gold ? " wrong" : ""));
      tr.appendChild(el("td", "mark", marks.join(" ")));
      tr.appendChild(el("td", null, String(i + 1)));
      tr.appendChild(el("td", null, Array.isArray(d.choices) ? d.choices[i] : "(choice text not stored)"));
      tr.appendChild(el("td", "ll", fmt(ll, 3)));
      if (norm) tr.appendChild(el("td", "ll", fmt(ll / Math.max(d.choice_chars[i], 1), 4)));
      t.appendChild(tr);
    });
    g.appendChild(el("b", null, "choices"));
    g.appendChild(t);
  }

  // A visual question's image(s), as the small data URLs the task stored (tasks/kinds/visual_qa.py).
  function images(grid, urls) {
    var shown = urls.filter(function (u) { return typeof u === "string" && u.indexOf("data:image/") === 0; });
    if (!shown.length) return;
    grid.appendChild(el("b", null, shown.length > 1 ? "images" : "image"));
    var box = el("div", "images");
    shown.forEach(function (u) { var img = el("img", "shot"); img.src = u; img.alt = "the sample's image"; box.appendChild(img); });
    grid.appendChild(box);
  }

  function card(r) {
    var c = el("div", "sample " + r.verdict);
    c.setAttribute("data-verdict", r.verdict);
    var head = el("div", "head");
    head.appendChild(el("span", "item", r.item));
    head.appendChild(el("span", "verdict " + r.verdict, r.verdict));
    var m = Object.keys(r.metrics).map(function (k) { return k + "=" + fmt(r.metrics[k]); }).join("  ");
    head.appendChild(el("span", "metrics", m));
    c.appendChild(head);
    var g = el("div", "grid");
    field(g, "prompt", r.prompt, null, (r.prompt || "").length > 400);
    var d = r.details;
    if (d && Array.isArray(d.images)) images(g, d.images);
    var judged = d && Array.isArray(d.turns) && Array.isArray(d.answers);
    if (judged) {
      judgedTurns(g, d);
    } else if (isChoices(d)) {
      choicesView(g, d);
      var raw = Array.isArray(r.output) && r.output.every(function (o) { return o && typeof o === "object"; });
      if (!raw) field(g, "output", outputText(r.output));  // the log-likelihoods are in the table already
    } else {
      field(g, "output", outputText(r.output));
      field(g, "extracted", show(r.extracted));
    }
    field(g, "target", show(r.target));
    if (judged || isChoices(d)) {
      // shown above: turn by turn, or choice by choice
    } else if (d && d.status !== undefined) {
      field(g, "test status", show(d.status) + (d.error_type ? " · " + d.error_type : "") +
        (d.passed !== undefined ? " · passed " + d.passed + "/" + d.n : "") + (d.wall_s ? " · " + fmt(d.wall_s, 2) + " s" : ""),
        r.verdict === "correct" ? null : "err");
      if (d.stderr) field(g, "stderr (tail)", d.stderr, "err");
    } else if (d && d.reason !== undefined && d.error_type !== undefined) {
      // A function call checked by BFCL's AST checker: why it failed, and the native tool calls if any.
      field(g, "checker", (d.valid ? "valid" : d.reason + " · " + d.error_type) + (d.message ? "\n" + d.message : ""),
        d.valid ? null : "err");
      if (Array.isArray(d.output)) field(g, "tool calls", show(d.output));
      field(g, "category", d.category + " · mode " + d.mode);
    } else if (d && Object.keys(d).some(function (k) { return k !== "images"; })) {
      var rest = {};
      Object.keys(d).forEach(function (k) { if (k !== "images") rest[k] = d[k]; });
      var txt = show(rest);
      field(g, "details", txt.length > 4000 ? txt.slice(0, 4000) + "\n…" : txt, null, txt.length > 300);
    }
    c.appendChild(g);
    return c;
  }

  function render(pages) {
    list.textContent = "";
    var start = state.page * PAGE, rows = state.filtered.slice(start, start + PAGE);
    var frag = document.createDocumentFragment();
    rows.forEach(function (r) { frag.appendChild(card(r)); });
    if (!rows.length) frag.appendChild(el("p", "empty-list", "No sample matches these filters."));
    list.appendChild(frag);
    info.textContent = "page " + (state.page + 1) + " of " + pages + " · " + state.filtered.length + " of " +
      state.rows.length + " samples match";
    $("prev").disabled = state.page === 0;
    $("next").disabled = state.page >= pages - 1;
  }

  function fromHash() {
    var h = decodeURIComponent(location.hash || "");
    if (h.indexOf("#samples/") === 0) { open(h.slice(9), true); return true; }
    return false;
  }

  fillSelect();
  jobSelect.addEventListener("change", function () { history.replaceState(null, "", "#samples/" + jobSelect.value); open(jobSelect.value); });
  verdictSel.addEventListener("change", function () { state.page = 0; apply(); });
  statusSel.addEventListener("change", function () { state.page = 0; apply(); });
  var timer = null;
  search.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(function () { state.page = 0; apply(); }, 150); });
  $("prev").addEventListener("click", function () { if (state.page > 0) { state.page--; apply(); } });
  $("next").addEventListener("click", function () { state.page++; apply(); });
  document.querySelectorAll("td.cell[data-job]").forEach(function (td) {
    td.addEventListener("click", function () { location.hash = "samples/" + td.getAttribute("data-job"); });
  });
  window.addEventListener("hashchange", fromHash);
  if (!fromHash() && DATA.jobs.length) {
    // Load the first job only once the samples section comes into view.
    var first = DATA.jobs[0].key;
    jobSelect.value = first;
    if ("IntersectionObserver" in window) {
      var io = new IntersectionObserver(function (entries) {
        if (entries.some(function (e) { return e.isIntersecting; })) { io.disconnect(); if (!state.key) open(jobSelect.value); }
      });
      io.observe($("samples"));
    } else {
      open(first);
    }
  }
  window.evalmapReport = { open: open, state: state };
})();
